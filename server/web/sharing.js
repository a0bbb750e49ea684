// Sharing and links: the Share… dialog (people and their roles for a
// folder, links for anything else), a link's row, and the shares this page
// last heard of (which the change feed compares with, to say what is new).

import { api } from './api.js';
import { mutate } from './change.js';
import { $, h } from './dom.js';
import { reloadFolder } from './folder.js';
import { formatTime } from './format.js';
import { nameOf } from './paths.js';
import { session } from './session.js';
import { dialog, fail, toast } from './ui.js';

let known = [];

/// The shares last heard of, by any view or the change feed.
export const knownShares = () => known;
export function sawShares(shares) {
  known = shares;
}

const EXPIRY = [['Never', ''], ['1 day', 86400], ['7 days', 7 * 86400], ['30 days', 30 * 86400]];

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Link copied');
  } catch {
    toast(`Copy this link: ${text}`);
  }
}

export function linkRow(l, after) {
  return h('div', { class: 'link', dataset: { id: l.id } },
    h('input', { class: 'url', value: l.url, readonly: true, 'aria-label': 'Link', onfocus: (ev) => ev.target.select() }),
    h('span', { class: 'muted' }, [l.by ? `made by ${l.by}` : '', l.password ? 'password' : '',
      l.expires ? `until ${formatTime(l.expires)}` : ''].filter(Boolean).join(', ')),
    h('button', { type: 'button', onclick: () => copy(l.url) }, 'Copy'),
    h('button', { type: 'button', class: 'danger', onclick: async () => {
      try {
        await api.revokeLink(l.id);
        toast('Link revoked');
        after();
      } catch (err) {
        fail(err);
      }
    } }, 'Revoke'));
}

export async function shareDialog(e) {
  const name = nameOf(e.path);
  const people = h('div', { class: 'people' });
  const links = h('div', { class: 'links' });
  const body = [];
  const refresh = async () => {
    try {
      if (e.kind === 'dir') {
        const { shares } = await api.shares();
        sawShares(shares);
        const share = shares.find((s) => s.path === e.path);
        const mine = !share || share.role === 'owner';
        people.replaceChildren(
          h('h3', {}, 'People'),
          ...(share ? share.members : []).map((m) =>
            h('div', { class: 'member', dataset: { user: m.user } },
              h('span', {}, m.user),
              m.role === 'owner' || !mine ? h('span', { class: 'muted' }, m.role)
                : h('select', { 'aria-label': `Role of ${m.user}`, onchange: async (ev) => {
                  try {
                    await api.setRole(share.id, m.user, ev.target.value);
                    toast(`${m.user} is now ${ev.target.value}`);
                  } catch (err) {
                    fail(err);
                  }
                } }, ['editor', 'viewer'].map((r) => h('option', { value: r, selected: r === m.role }, r))),
              mine && m.role !== 'owner'
                ? h('button', { type: 'button', class: 'danger', onclick: async () => {
                  try {
                    await api.removeMember(share.id, m.user);
                    toast(`${m.user} removed`);
                    refresh();
                  } catch (err) {
                    fail(err);
                  }
                } }, 'Remove') : '')),
          mine ? h('div', { class: 'add' },
            h('input', { id: 'share-with', placeholder: 'User name', 'aria-label': 'Share with user' }),
            h('select', { id: 'share-role', 'aria-label': 'Role' },
              h('option', { value: 'editor' }, 'can edit'), h('option', { value: 'viewer' }, 'can view')),
            h('button', { type: 'button', id: 'share-add', class: 'primary', onclick: async () => {
              const user = $('share-with').value.trim();
              if (!user) return;
              try {
                await api.share(e.path, user, $('share-role').value);
                toast(`Shared ${name} with ${user}`);
                refresh();
                reloadFolder();
              } catch (err) {
                fail(err);
              }
            } }, 'Share'))
            : h('button', { type: 'button', class: 'danger', onclick: async () => {
              $('dialog').close();
              await mutate('leave', () => api.removeMember(share.id, session().user), `Left ${name}`);
            } }, 'Leave this folder'),
        );
      }
      // The server links to what is in a shared folder, not to the folder.
      if (e.kind === 'dir' && known.some((s) => s.path === e.path)) {
        links.replaceChildren(h('h3', {}, 'Links'),
          h('p', { class: 'muted' }, 'A shared folder has no link of its own: make links to what is in it.'));
        return;
      }
      const all = (await api.links()).links.filter((l) => l.path === e.path);
      links.replaceChildren(
        h('h3', {}, 'Links'),
        h('p', { class: 'muted' }, 'Anyone with a link can view and download (read-only).'),
        ...all.map((l) => linkRow(l, refresh)),
        h('div', { class: 'add' },
          h('select', { id: 'link-expiry', 'aria-label': 'Expires' },
            EXPIRY.map(([label, v]) => h('option', { value: v }, `expires: ${label}`))),
          h('input', { id: 'link-password', type: 'password', placeholder: 'Password (optional)',
            'aria-label': 'Link password', autocomplete: 'new-password' }),
          h('button', { type: 'button', id: 'link-create', class: 'primary', onclick: async () => {
            try {
              const l = await api.createLink(e.path, Number($('link-expiry').value) || undefined,
                $('link-password').value);
              toast('Link created');
              await refresh();
              copy(l.url);
            } catch (err) {
              fail(err);
            }
          } }, 'Create link')),
      );
    } catch (err) {
      fail(err);
    }
  };
  if (e.kind === 'dir') body.push(people);
  else body.push(h('p', { class: 'muted' }, 'To share with another user, share the folder holding this file.'));
  body.push(links);
  refresh();
  await dialog(`Share ${name}`, body);
}
