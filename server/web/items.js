// What can be done to an item of a folder: open it, the row menu, and the
// changes it offers (new folder, rename, move, delete or leave); preview,
// history and sharing open their own dialogs.

import { api } from './api.js';
import { commitOne, mutate } from './change.js';
import { h, visible } from './dom.js';
import { history } from './history.js';
import { join, nameOf, parentOf, previewable } from './paths.js';
import { currentPath, go } from './place.js';
import { download, preview } from './preview.js';
import { shareDialog } from './sharing.js';
import { ask, dialog, fail } from './ui.js';

export function open(e) {
  if (e.kind === 'dir') go(e.path);
  else if (previewable(nameOf(e.path))) preview(e);
  else download(e.path);
}

export function actionsOf(e) {
  const name = nameOf(e.path);
  const items = [];
  if (e.kind === 'dir') {
    items.push(['Open', () => go(e.path)]);
    items.push(['Download as zip', () => {
      const a = h('a', { href: api.zipUrl(e.path), download: `${name}.zip` });
      document.body.append(a);
      a.click();
      a.remove();
    }]);
  } else {
    if (previewable(name)) items.push(['Preview', () => preview(e)]);
    items.push(['Download', () => download(e.path)]);
    items.push(['Version history', () => history(e)]);
  }
  items.push(['Share…', () => shareDialog(e)]);
  items.push(['Rename…', () => rename(e)]);
  items.push(['Move…', () => moveDialog(e)]);
  const leave = e.share && e.share.role !== 'owner';
  items.push([leave ? 'Leave shared folder' : 'Delete', () => remove(e), 'danger']);
  return items;
}

export async function newFolder() {
  const name = await ask('New folder', 'Name');
  if (!name) return;
  await mutate('mkdir', () => commitOne({ op: 'mkdir', path: join(currentPath(), name) }), `Made folder ${name}`);
}

async function rename(e) {
  const name = await ask(`Rename ${nameOf(e.path)}`, 'New name', nameOf(e.path));
  if (!name || name === nameOf(e.path)) return;
  const to = join(parentOf(e.path), name);
  await mutate('rename', () => commitOne({ op: 'move', from: e.path, to, parent_rev: e.rev }), `Renamed to ${name}`);
}

export async function move(path, folder) {
  if (parentOf(path) === folder || path === folder) return;
  const to = join(folder, nameOf(path));
  await mutate('move', () => commitOne({ op: 'move', from: path, to, parent_rev: null }),
    `Moved ${nameOf(path)} to ${folder || 'Files'}`);
}

async function remove(e) {
  const name = nameOf(e.path);
  const leave = e.share && e.share.role !== 'owner';
  const text = leave
    ? `Leave “${name}”? It stays with ${e.share.owner}; it leaves your devices.`
    : e.kind === 'dir'
      ? `Delete the folder “${name}” and everything in it? It goes to the trash, from where you can restore it.`
      : `Delete “${name}”? It goes to the trash, from where you can restore it.`;
  const ok = await dialog(leave ? 'Leave shared folder' : 'Delete', h('p', {}, text), [
    ['Cancel', null],
    [leave ? 'Leave' : 'Delete', 'ok', 'danger'],
  ]);
  if (!ok) return;
  await mutate('delete', () => api.remove(e.path), leave ? `Left ${name}` : `Deleted ${name}`);
}

async function moveDialog(e) {
  let at = parentOf(e.path);
  const list = h('div', { class: 'folders' });
  const where = h('p', { class: 'where' });
  const show = async () => {
    where.textContent = visible(`Move to: ${at || 'Files'}`);
    list.replaceChildren(h('p', {}, 'Loading…'));
    try {
      const folders = (await api.list(at)).entries.filter((x) => x.kind === 'dir' && x.path !== e.path);
      list.replaceChildren(
        ...(at ? [h('button', { type: 'button', class: 'folder up', onclick: () => { at = parentOf(at); show(); } }, '↑ Up')] : []),
        ...folders.map((f) =>
          h('button', { type: 'button', class: 'folder', dataset: { path: f.path },
            onclick: () => { at = f.path; show(); } }, `📁 ${nameOf(f.path)}`)),
      );
    } catch (err) {
      fail(err);
    }
  };
  show();
  const ok = await dialog(`Move ${nameOf(e.path)}`, [where, list], [['Cancel', null], ['Move here', 'ok', 'primary']]);
  if (ok) await move(e.path, at);
}
