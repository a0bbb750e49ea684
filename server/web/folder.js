// The folder view: the toolbar, the path as crumbs, and the folder's
// entries as a virtual list (only the rows in view exist, so a folder of
// 10,000 entries stays responsive), sorted and filtered by name. What a
// row can do comes from items.js, through `offer`.

import { api } from './api.js';
import { $, h, visible } from './dom.js';
import { formatBytes, formatTime } from './format.js';
import { IMAGE, nameOf, parentOf } from './paths.js';
import { currentPath, currentView, go, hrefOf } from './place.js';
import { fail, menu } from './ui.js';

let entries = [];
let shown = [];
let sort = { key: 'name', dir: 1 };
let filter = '';

/// What the rows and the toolbar offer: `{ actionsOf, open, newFolder,
/// move }`. Set once by app.js: items.js reloads this view after a change,
/// so this view does not import it.
let actions = null;
export function offer(a) {
  actions = a;
}

const ROW = () => (window.matchMedia('(max-width: 600px)').matches ? 60 : 44);

export async function showFolder() {
  const listing = await api.list(currentPath());
  entries = listing.entries;
  renderFolder();
}

export async function reloadFolder() {
  if (currentView() !== 'files') return;
  try {
    const listing = await api.list(currentPath());
    entries = listing.entries;
    applyFilter();
  } catch (e) {
    if (e.status === 404) go(parentOf(currentPath()));
    else fail(e);
  }
}

function compare(a, b) {
  if (a.kind !== b.kind) return a.kind === 'dir' ? -1 : 1;
  const { key, dir } = sort;
  let r = 0;
  if (key === 'size') r = a.size - b.size;
  else if (key === 'modified') r = a.mtime - b.mtime;
  if (r === 0) r = collator.compare(nameOf(a.path), nameOf(b.path));
  return r * dir;
}
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

function applyFilter() {
  const f = filter.toLowerCase();
  shown = entries.filter((e) => !f || nameOf(e.path).toLowerCase().includes(f)).sort(compare);
  const list = $('list');
  if (!list) return;
  $('spacer').style.height = `${shown.length * ROW()}px`;
  $('count').textContent = countText();
  $('empty').hidden = shown.length > 0;
  $('empty').textContent = f ? visible(`Nothing here matches “${filter}”.`) : 'This folder is empty. Drop files here to upload them.';
  renderRows(true);
}

function countText() {
  const n = shown.length;
  const all = entries.length;
  return n === all ? `${all} item${all === 1 ? '' : 's'}` : `${n} of ${all} items`;
}

function crumbs() {
  const path = currentPath();
  const parts = path ? path.split('/') : [];
  const nav = h('nav', { class: 'crumbs', 'aria-label': 'Folder path' });
  const add = (label, to) => {
    const a = h('a', { href: hrefOf(to), dataset: { path: to } }, label);
    dropTarget(a, to);
    nav.append(a);
  };
  add('Files', '');
  parts.forEach((p, i) => {
    nav.append(h('span', { class: 'sep' }, '›'));
    add(p, parts.slice(0, i + 1).join('/'));
  });
  return nav;
}

function renderFolder() {
  const sortButton = (key, label, cls) =>
    h('button', {
      class: `sort ${cls} ${sort.key === key ? 'on' : ''}`,
      dataset: { sort: key },
      'aria-sort': sort.key === key ? (sort.dir > 0 ? 'ascending' : 'descending') : undefined,
      onclick: () => {
        sort = { key, dir: sort.key === key ? -sort.dir : 1 };
        renderFolder();
      },
    }, label, sort.key === key ? (sort.dir > 0 ? ' ↑' : ' ↓') : '');
  const main = $('main');
  main.replaceChildren(
    h('div', { class: 'toolbar' },
      crumbs(),
      h('div', { class: 'actions' },
        h('button', { class: 'primary', id: 'upload-button', onclick: () => $('pick-files').click() }, 'Upload'),
        h('button', { id: 'upload-folder-button', onclick: () => $('pick-folder').click() }, 'Upload folder'),
        h('button', { id: 'new-folder', onclick: actions.newFolder }, 'New folder'),
        h('a', { class: 'button', href: api.zipUrl(currentPath()), download: '' }, 'Download all'),
      ),
    ),
    h('div', { class: 'head', role: 'row' },
      sortButton('name', 'Name', 'name'),
      sortButton('size', 'Size', 'size'),
      sortButton('modified', 'Modified', 'modified'),
      h('span', { class: 'count', id: 'count' }),
    ),
    h('div', { class: 'list', id: 'list', role: 'grid', 'aria-label': 'Files' },
      h('div', { class: 'spacer', id: 'spacer' }, h('div', { id: 'rows' })),
      h('p', { class: 'empty', id: 'empty', hidden: true }),
    ),
  );
  $('list').addEventListener('scroll', () => renderRows(false), { passive: true });
  applyFilter();
}

let rendered = { first: -1, last: -1 };
function renderRows(force) {
  const list = $('list');
  if (!list) return;
  const row = ROW();
  const first = Math.max(0, Math.floor(list.scrollTop / row) - 10);
  const last = Math.min(shown.length, Math.ceil((list.scrollTop + list.clientHeight) / row) + 10);
  if (!force && first === rendered.first && last === rendered.last) return;
  rendered = { first, last };
  const rows = $('rows');
  rows.style.transform = `translateY(${first * row}px)`;
  rows.replaceChildren(...shown.slice(first, last).map(rowOf));
}
window.addEventListener('resize', () => currentView() === 'files' && applyFilter());

function rowOf(e) {
  const name = nameOf(e.path);
  const dir = e.kind === 'dir';
  const icon = dir ? (e.share ? 'shared' : 'folder') : IMAGE.test(name) ? 'image' : 'file';
  const more = h('button', {
    class: 'more',
    'aria-label': `Actions for ${name}`,
    onclick: (ev) => {
      ev.stopPropagation();
      menu(ev.currentTarget, actions.actionsOf(e));
    },
  }, '⋯');
  const meta = dir ? (e.share ? `shared by ${e.share.owner}` : '') : formatBytes(e.size);
  const r = h('div', {
    class: `row ${dir ? 'dir' : 'file'}`,
    role: 'row',
    draggable: 'true',
    dataset: { name, path: e.path, kind: e.kind },
    oncontextmenu: (ev) => {
      ev.preventDefault();
      menu(more, actions.actionsOf(e));
    },
    ondragstart: (ev) => {
      ev.dataTransfer.setData('application/x-ferry-path', e.path);
      ev.dataTransfer.effectAllowed = 'move';
    },
  },
  h('span', { class: `icon ${icon}`, 'aria-hidden': 'true' }),
  h('button', { class: 'name', title: name, onclick: () => actions.open(e) }, name,
    h('small', { class: 'sub' }, [meta, formatTime(dir ? e.modified : e.mtime)].filter(Boolean).join(' · '))),
  h('span', { class: 'size' }, dir ? '—' : formatBytes(e.size)),
  h('span', { class: 'modified', title: new Date(dir ? e.modified : e.mtime).toLocaleString() },
    formatTime(dir ? e.modified : e.mtime)),
  more);
  if (dir) dropTarget(r, e.path);
  return r;
}

/// A folder (a row, a crumb) that items of this page can be dragged onto.
function dropTarget(el, folder) {
  el.addEventListener('dragover', (ev) => {
    if (ev.dataTransfer.types.includes('application/x-ferry-path')) {
      ev.preventDefault();
      ev.stopPropagation();
      el.classList.add('target');
    }
  });
  el.addEventListener('dragleave', () => el.classList.remove('target'));
  el.addEventListener('drop', (ev) => {
    const path = ev.dataTransfer.getData('application/x-ferry-path');
    el.classList.remove('target');
    if (!path) return;
    ev.preventDefault();
    ev.stopPropagation();
    if (path !== folder) actions.move(path, folder);
  });
}

$('filter').addEventListener('input', (e) => {
  filter = e.target.value;
  if (currentView() === 'files') {
    $('list').scrollTop = 0;
    applyFilter();
  }
});
