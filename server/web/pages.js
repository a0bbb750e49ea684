// The views that are one page of rows: the trash (to restore from), the
// shares with and by this user, the links, and the activity.

import { api } from './api.js';
import { refreshAccount } from './account.js';
import { $, h } from './dom.js';
import { describe, formatBytes, formatTime } from './format.js';
import { nameOf, parentOf } from './paths.js';
import { hrefOf } from './place.js';
import { linkRow, sawShares } from './sharing.js';
import { fail, toast } from './ui.js';

function page(title, ...content) {
  $('main').replaceChildren(h('div', { class: 'page' }, h('h2', {}, title), ...content));
}

export async function showTrash() {
  const { items } = await api.trash();
  page('Trash', items.length
    ? h('div', { class: 'table' }, items.map((t) =>
      h('div', { class: 'trash-item row-static', dataset: { path: t.path } },
        h('span', { class: `icon ${t.kind === 'dir' ? 'folder' : 'file'}` }),
        h('span', { class: 'grow' }, h('b', {}, nameOf(t.path)), h('small', { class: 'sub' },
          `${parentOf(t.path) || 'Files'} · ${t.kind === 'dir' ? `${t.items} item${t.items === 1 ? '' : 's'}, ` : ''}${formatBytes(t.size)}`)),
        h('span', { class: 'muted' }, `deleted ${formatTime(t.deleted)} by ${t.user} (${t.device})`),
        h('button', { onclick: async () => {
          try {
            await api.restoreDeleted(t.path);
            toast(`Restored ${nameOf(t.path)}`);
            refreshAccount();
            showTrash();
          } catch (err) {
            fail(err);
          }
        } }, 'Restore'))))
    : h('p', { class: 'empty' }, 'The trash is empty.'));
}

export async function showShared() {
  const { shares } = await api.shares();
  sawShares(shares);
  const section = (title, list) => [
    h('h3', {}, title),
    list.length ? list.map((s) => h('div', { class: 'share row-static', dataset: { path: s.path } },
      h('span', { class: 'icon shared' }),
      h('a', { class: 'grow', href: hrefOf(s.path) }, s.path),
      h('span', { class: 'muted' }, s.role === 'owner'
        ? `with ${s.members.filter((m) => m.role !== 'owner').map((m) => `${m.user} (${m.role})`).join(', ')}`
        : `${s.owner}'s, you ${s.role === 'editor' ? 'can edit' : 'can view'}`)))
      : h('p', { class: 'muted' }, 'None.'),
  ];
  page('Shared', ...section('Shared with me', shares.filter((s) => s.role !== 'owner')),
    ...section('Shared by me', shares.filter((s) => s.role === 'owner')));
}

export async function showLinks() {
  const { links } = await api.links();
  page('Links', links.length
    ? links.map((l) => h('div', { class: 'row-static' },
      h('span', { class: 'grow' }, l.path || '(deleted)'), linkRow(l, showLinks)))
    : h('p', { class: 'empty' }, 'No links. Make one from a file’s or folder’s Share… action.'));
}

export async function showActivity() {
  const { events } = await api.activity(100);
  page('Activity', events.length
    ? events.map((ev) => h('div', { class: 'event row-static' },
      h('span', { class: 'grow' }, describe(ev)),
      h('span', { class: 'muted' }, `${formatTime(ev.time)} · ${ev.device}`)))
    : h('p', { class: 'empty' }, 'Nothing happened yet.'));
}
