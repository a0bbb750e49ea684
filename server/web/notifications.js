// Changes made elsewhere, by long poll: the view and the usage shown
// again, a toast for each (new shares and lost ones said once), the
// bell's count, and its panel of recent changes.

import { api } from './api.js';
import { refreshAccount } from './account.js';
import { $, h } from './dom.js';
import { reloadFolder } from './folder.js';
import { describe, formatTime } from './format.js';
import { currentView } from './place.js';
import { route } from './router.js';
import { session } from './session.js';
import { knownShares, sawShares } from './sharing.js';
import { fail, toast } from './ui.js';

/// Not yet seen on the bell's panel.
let unread = 0;
/// The latest events, newest first, for the panel.
let recent = [];
/// The newest event seen: what is newer is news.
let lastSeq = 0;

let watching = null;
export function stopWatching() {
  watching?.abort();
  watching = null;
}

export async function watch() {
  stopWatching();
  const ctl = new AbortController();
  watching = ctl;
  let cursor = 0;
  try {
    const first = await api.poll(0, 0, ctl.signal);
    cursor = first.cursor;
    const { events } = await api.activity(20);
    lastSeq = events[0]?.seq ?? 0;
    recent = events;
    sawShares((await api.shares()).shares);
  } catch (e) {
    if (e.name === 'AbortError') return;
  }
  let failures = 0;
  while (!ctl.signal.aborted) {
    try {
      const r = await api.poll(cursor, 50, ctl.signal);
      failures = 0;
      if (r.changes) {
        cursor = r.cursor;
        await news();
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e.status === 401) return fail(e);
      if (e.code === 'cursor_reset') cursor = 0;
      failures++;
      await new Promise((r) => setTimeout(r, Math.min(1000 * failures, 15000)));
    }
  }
}

async function news() {
  if (currentView() === 'files') reloadFolder();
  else if (currentView() !== 'links') route();
  refreshAccount();
  const { events } = await api.activity(50);
  const fresh = events.filter((ev) => ev.seq > lastSeq);
  if (events.length) lastSeq = Math.max(lastSeq, events[0].seq);
  recent = events;
  const others = fresh.filter((ev) => ev.device !== session().device);
  const { shares } = await api.shares();
  const known = new Set(knownShares().map((s) => s.id));
  const ids = new Set(shares.map((s) => s.id));
  const notes = [];
  for (const s of shares) {
    if (!known.has(s.id) && s.role !== 'owner') notes.push(`${s.owner} shared ${s.path} with you (${s.role})`);
  }
  for (const s of knownShares()) {
    if (!ids.has(s.id) && s.role !== 'owner') notes.push(`Your access to ${s.path} (shared by ${s.owner}) was removed`);
  }
  sawShares(shares);
  // Items appearing because a folder was shared are said once, as the share.
  const sharedNow = notes.length ? others.filter((ev) => !shares.some((s) => ev.path.startsWith(s.path))) : others;
  notes.push(...sharedNow.slice(0, 5).map(describe));
  if (sharedNow.length > 5) notes.push(`and ${sharedNow.length - 5} more changes`);
  for (const n of notes) toast(n, 'note');
  unread += notes.length;
  const badge = $('badge');
  badge.hidden = unread === 0;
  badge.textContent = unread > 99 ? '99+' : String(unread);
}

$('bell').addEventListener('click', (e) => {
  e.stopPropagation();
  const panel = $('notes');
  if (!panel.hidden) {
    panel.hidden = true;
    return;
  }
  unread = 0;
  $('badge').hidden = true;
  panel.replaceChildren(h('h3', {}, 'Recent changes'),
    ...(recent.length ? recent.slice(0, 20).map((ev) => h('div', { class: 'event' },
      h('span', {}, describe(ev)), h('small', { class: 'muted' }, `${formatTime(ev.time)} · ${ev.device}`)))
      : [h('p', { class: 'muted' }, 'Nothing yet.')]),
    h('a', { href: '#/activity', onclick: () => { panel.hidden = true; } }, 'All activity'));
  panel.hidden = false;
});
document.addEventListener('click', (e) => {
  const panel = $('notes');
  if (!panel.hidden && !panel.contains(e.target) && e.target !== $('bell')) panel.hidden = true;
});
