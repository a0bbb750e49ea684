// Making a change from the page: one commit whose own error is thrown, and
// `mutate`, which tells how a change went and then shows the folder and
// the usage again.

import { api, ApiError } from './api.js';
import { refreshAccount } from './account.js';
import { reloadFolder } from './folder.js';
import { fail, toast } from './ui.js';

export async function mutate(what, fn, done) {
  try {
    await fn();
    if (done) toast(done);
  } catch (e) {
    fail(e);
  }
  await reloadFolder();
  refreshAccount();
  return what;
}

/// A commit of one operation; its own error is thrown.
export async function commitOne(op) {
  const r = await api.commit([op]);
  const res = r.results[0];
  if (res.error) throw new ApiError(res.status, res.error.code, res.error.message);
  return res.entry;
}
