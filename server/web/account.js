// The account's storage: what is used of the quota, shown under the
// places, and the room left (which uploads check before sending).

import { api } from './api.js';
import { $ } from './dom.js';
import { formatBytes } from './format.js';
import { fail } from './ui.js';

let account = null;

export async function refreshAccount() {
  try {
    const a = await api.account();
    account = a;
    const pct = a.quota ? Math.min(100, (a.used / a.quota) * 100) : 0;
    $('used').style.width = `${pct}%`;
    $('used').classList.toggle('full', pct > 90);
    $('usage-text').textContent = `${formatBytes(a.used)} of ${formatBytes(a.quota)} used`;
  } catch (e) {
    fail(e);
  }
}

/// Bytes the quota has left, or undefined before the account is known.
export function room() {
  return account ? Math.max(0, account.quota - account.used) : undefined;
}
