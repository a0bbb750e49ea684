// Ferry's web app: plain ES modules, no build step. Views follow the URL's
// hash (#/files/PATH, #/shared, #/links, #/trash, #/activity); the folder
// list is virtual (only the rows in view exist), so a folder of 10,000
// entries stays responsive. Changes made elsewhere arrive by long poll.

import { api, ApiError, setCsrf } from './api.js';
import { MAX_FILE_SIZE, Uploads, unfinished } from './upload.js';

const $ = (id) => document.getElementById(id);

/// Makes an element: `h('button', {class: 'x', onclick: f}, 'text', child)`.
// Characters that change how a name reads without showing themselves
// (bidirectional overrides and isolates, zero-width and other invisible
// ones): shown as [U+XXXX] wherever the page shows text, so that
// "evil\u202Etxt.exe" cannot pass for "evilexe.txt". A joiner between two
// non-ASCII characters (emoji sequences, Persian words) is writing and
// stays. The same rule as `ferry_shared::path::visible`.
const HIDDEN = /[\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\u3164\uFEFF\uFFA0]/g;
function visible(text) {
  return String(text).replace(HIDDEN, (c, i, all) => {
    const joins = (c === '\u200C' || c === '\u200D') && i > 0 && all.charCodeAt(i - 1) > 0x7f
      && i + 1 < all.length && all.charCodeAt(i + 1) > 0x7f && !HIDDEN_ONE.test(all[i + 1]);
    return joins ? c : `[U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}]`;
  });
}
const HIDDEN_ONE = new RegExp(HIDDEN.source);

// Text and the attributes a person reads go through `visible`; values
// (what an input holds, data) stay as they are.
const READ = new Set(['title', 'aria-label', 'download', 'placeholder']);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : READ.has(k) ? visible(v) : v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : visible(c));
  }
  return el;
}

const state = {
  session: null,
  account: null,
  view: 'files',
  path: '',
  entries: [],
  shown: [],
  sort: { key: 'name', dir: 1 },
  filter: '',
  shares: [],
  unread: 0,
  events: [],
  lastSeq: 0,
};

// ---------- formatting ----------

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

function formatTime(ms) {
  const d = new Date(ms);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' });
}

const nameOf = (path) => path.split('/').pop();
const parentOf = (path) => path.split('/').slice(0, -1).join('/');
const join = (dir, name) => (dir ? `${dir}/${name}` : name);

const IMAGE = /\.(png|jpe?g|gif|webp|bmp|svg|avif|ico)$/i;
const TEXT = /\.(txt|md|csv|tsv|json|log|xml|ya?ml|toml|ini|conf|rs|js|mjs|ts|py|go|c|h|cpp|hpp|java|kt|sh|css|html?|sql|rb|php)$/i;
const PDF = /\.pdf$/i;
const previewable = (name) => IMAGE.test(name) || TEXT.test(name) || PDF.test(name);

// ---------- toasts, menus, dialogs ----------

function toast(message, kind = 'info') {
  const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  $('toasts').append(t);
  // A burst shows its latest few, not a wall.
  while ($('toasts').children.length > 4) $('toasts').firstElementChild.remove();
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 5000);
}

function fail(e) {
  if (e instanceof ApiError && e.status === 401) {
    showLogin('Your session ended: log in again.');
    return;
  }
  toast(e.message || String(e), 'error');
}

let openMenu = null;
function closeMenu() {
  openMenu?.remove();
  openMenu = null;
}
document.addEventListener('click', (e) => {
  if (openMenu && !openMenu.contains(e.target)) closeMenu();
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') closeMenu();
});

function menu(anchor, items) {
  closeMenu();
  const m = h(
    'div',
    { class: 'menu', role: 'menu' },
    items.map(([label, action, cls]) =>
      h('button', {
        role: 'menuitem',
        class: cls,
        onclick: (e) => {
          e.stopPropagation();
          closeMenu();
          action();
        },
      }, label),
    ),
  );
  document.body.append(m);
  const r = anchor.getBoundingClientRect();
  const top = Math.min(r.bottom + 4, window.innerHeight - m.offsetHeight - 8);
  m.style.top = `${Math.max(8, top)}px`;
  m.style.left = `${Math.max(8, Math.min(r.right - m.offsetWidth, window.innerWidth - m.offsetWidth - 8))}px`;
  openMenu = m;
  m.querySelector('button')?.focus();
}

/// Shows a modal dialog; `buttons` are [label, value, class]. Resolves with
/// the value of the button pressed (the form's data for a submit), or null.
function dialog(title, body, buttons = [['Close', null]]) {
  const d = $('dialog');
  d.replaceChildren();
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog' });
    form.append(h('h2', {}, title), ...[body].flat().filter(Boolean));
    const row = h('div', { class: 'buttons' });
    for (const [label, value, cls] of buttons) {
      row.append(h('button', { value: value ?? '', class: cls || '', type: value === 'ok' ? 'submit' : 'button',
        onclick: (e) => {
          if (value !== 'ok') {
            e.preventDefault();
            d.close(value ?? '');
          }
        } }, label));
    }
    form.append(row);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      d.close('ok');
    });
    d.append(form);
    d.onclose = () => {
      const v = d.returnValue;
      d.returnValue = '';
      resolve(v === 'ok' ? new FormData(form) : v || null);
    };
    d.showModal();
    const first = form.querySelector('input, select');
    if (first) {
      first.focus();
      if (first.select) first.select();
    }
  });
}

async function ask(title, label, value = '') {
  const data = await dialog(title, h('label', {}, label, h('input', { name: 'value', value, required: true })), [
    ['Cancel', null],
    ['OK', 'ok', 'primary'],
  ]);
  return data ? data.get('value').trim() : null;
}

// ---------- session ----------

function showLogin(message = '') {
  state.session = null;
  stopWatching();
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('login-form').username.focus();
}

async function start(session) {
  state.session = session;
  setCsrf(session.csrf);
  $('login').hidden = true;
  $('app').hidden = false;
  $('me').textContent = session.user;
  await route();
  refreshAccount();
  watch();
  const left = unfinished();
  if (left.length) {
    toast(`Unfinished uploads: ${left.map((u) => u.path).join(', ')}. Drop or pick the same files again to resume.`);
  }
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target;
  $('login-error').textContent = '';
  try {
    await start(await api.login(f.username.value.trim(), f.password.value));
    f.password.value = '';
  } catch (err) {
    $('login-error').textContent = visible(err.message);
  }
});

$('me').addEventListener('click', (e) => {
  e.stopPropagation();
  menu(e.currentTarget, [
    [`Logged in as ${state.session.user}`, () => {}, 'muted'],
    ['Log out', async () => {
      try {
        await api.logout();
      } catch (err) {
        fail(err);
      }
      showLogin('Logged out.');
    }],
  ]);
});

async function refreshAccount() {
  try {
    const a = await api.account();
    state.account = a;
    const pct = a.quota ? Math.min(100, (a.used / a.quota) * 100) : 0;
    $('used').style.width = `${pct}%`;
    $('used').classList.toggle('full', pct > 90);
    $('usage-text').textContent = `${formatBytes(a.used)} of ${formatBytes(a.quota)} used`;
  } catch (e) {
    fail(e);
  }
}

// ---------- routing ----------

async function route() {
  closeMenu();
  const hash = decodeURIComponent(location.hash.slice(1) || '/files/');
  const [, view, ...rest] = hash.split('/');
  state.view = ['files', 'shared', 'links', 'trash', 'activity'].includes(view) ? view : 'files';
  state.path = state.view === 'files' ? rest.filter(Boolean).join('/') : '';
  for (const a of document.querySelectorAll('nav.side a')) {
    a.classList.toggle('active', a.dataset.view === state.view);
  }
  $('filter').hidden = state.view !== 'files';
  try {
    if (state.view === 'files') await showFolder();
    else if (state.view === 'trash') await showTrash();
    else if (state.view === 'shared') await showShared();
    else if (state.view === 'links') await showLinks();
    else await showActivity();
  } catch (e) {
    fail(e);
    if (e.status === 404 && state.view === 'files' && state.path) go(parentOf(state.path));
  }
}

window.addEventListener('hashchange', () => state.session && route());

const hrefOf = (path) => `#/files/${path.split('/').map(encodeURIComponent).join('/')}`;
function go(path) {
  location.hash = hrefOf(path);
}

// ---------- the folder view ----------

const ROW = () => (window.matchMedia('(max-width: 600px)').matches ? 60 : 44);

async function showFolder() {
  const listing = await api.list(state.path);
  state.entries = listing.entries;
  renderFolder();
}

async function reloadFolder() {
  if (state.view !== 'files') return;
  try {
    const listing = await api.list(state.path);
    state.entries = listing.entries;
    applyFilter();
  } catch (e) {
    if (e.status === 404) go(parentOf(state.path));
    else fail(e);
  }
}

function compare(a, b) {
  if (a.kind !== b.kind) return a.kind === 'dir' ? -1 : 1;
  const { key, dir } = state.sort;
  let r = 0;
  if (key === 'size') r = a.size - b.size;
  else if (key === 'modified') r = a.mtime - b.mtime;
  if (r === 0) r = collator.compare(nameOf(a.path), nameOf(b.path));
  return r * dir;
}
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

function applyFilter() {
  const f = state.filter.toLowerCase();
  state.shown = state.entries.filter((e) => !f || nameOf(e.path).toLowerCase().includes(f)).sort(compare);
  const list = $('list');
  if (!list) return;
  $('spacer').style.height = `${state.shown.length * ROW()}px`;
  $('count').textContent = countText();
  $('empty').hidden = state.shown.length > 0;
  $('empty').textContent = f ? visible(`Nothing here matches “${state.filter}”.`) : 'This folder is empty. Drop files here to upload them.';
  renderRows(true);
}

function countText() {
  const n = state.shown.length;
  const all = state.entries.length;
  return n === all ? `${all} item${all === 1 ? '' : 's'}` : `${n} of ${all} items`;
}

function crumbs() {
  const parts = state.path ? state.path.split('/') : [];
  const nav = h('nav', { class: 'crumbs', 'aria-label': 'Folder path' });
  const add = (label, path) => {
    const a = h('a', { href: hrefOf(path), dataset: { path } }, label);
    dropTarget(a, path);
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
      class: `sort ${cls} ${state.sort.key === key ? 'on' : ''}`,
      dataset: { sort: key },
      'aria-sort': state.sort.key === key ? (state.sort.dir > 0 ? 'ascending' : 'descending') : undefined,
      onclick: () => {
        state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
        renderFolder();
      },
    }, label, state.sort.key === key ? (state.sort.dir > 0 ? ' ↑' : ' ↓') : '');
  const main = $('main');
  main.replaceChildren(
    h('div', { class: 'toolbar' },
      crumbs(),
      h('div', { class: 'actions' },
        h('button', { class: 'primary', id: 'upload-button', onclick: () => $('pick-files').click() }, 'Upload'),
        h('button', { id: 'upload-folder-button', onclick: () => $('pick-folder').click() }, 'Upload folder'),
        h('button', { id: 'new-folder', onclick: newFolder }, 'New folder'),
        h('a', { class: 'button', href: api.zipUrl(state.path), download: '' }, 'Download all'),
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
  const last = Math.min(state.shown.length, Math.ceil((list.scrollTop + list.clientHeight) / row) + 10);
  if (!force && first === rendered.first && last === rendered.last) return;
  rendered = { first, last };
  const rows = $('rows');
  rows.style.transform = `translateY(${first * row}px)`;
  rows.replaceChildren(...state.shown.slice(first, last).map(rowOf));
}
window.addEventListener('resize', () => state.view === 'files' && applyFilter());

function rowOf(e) {
  const name = nameOf(e.path);
  const dir = e.kind === 'dir';
  const icon = dir ? (e.share ? 'shared' : 'folder') : IMAGE.test(name) ? 'image' : 'file';
  const more = h('button', {
    class: 'more',
    'aria-label': `Actions for ${name}`,
    onclick: (ev) => {
      ev.stopPropagation();
      menu(ev.currentTarget, actionsOf(e));
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
      menu(more, actionsOf(e));
    },
    ondragstart: (ev) => {
      ev.dataTransfer.setData('application/x-ferry-path', e.path);
      ev.dataTransfer.effectAllowed = 'move';
    },
  },
  h('span', { class: `icon ${icon}`, 'aria-hidden': 'true' }),
  h('button', { class: 'name', title: name, onclick: () => open(e) }, name,
    h('small', { class: 'sub' }, [meta, formatTime(dir ? e.modified : e.mtime)].filter(Boolean).join(' · '))),
  h('span', { class: 'size' }, dir ? '—' : formatBytes(e.size)),
  h('span', { class: 'modified', title: new Date(dir ? e.modified : e.mtime).toLocaleString() },
    formatTime(dir ? e.modified : e.mtime)),
  more);
  if (dir) dropTarget(r, e.path);
  return r;
}

function open(e) {
  if (e.kind === 'dir') go(e.path);
  else if (previewable(nameOf(e.path))) preview(e);
  else download(e.path);
}

function download(path, rev) {
  const a = h('a', { href: api.downloadUrl(path, rev), download: nameOf(path) });
  document.body.append(a);
  a.click();
  a.remove();
}

function actionsOf(e) {
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

async function mutate(what, fn, done) {
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
async function commitOne(op) {
  const r = await api.commit([op]);
  const res = r.results[0];
  if (res.error) throw new ApiError(res.status, res.error.code, res.error.message);
  return res.entry;
}

async function newFolder() {
  const name = await ask('New folder', 'Name');
  if (!name) return;
  await mutate('mkdir', () => commitOne({ op: 'mkdir', path: join(state.path, name) }), `Made folder ${name}`);
}

async function rename(e) {
  const name = await ask(`Rename ${nameOf(e.path)}`, 'New name', nameOf(e.path));
  if (!name || name === nameOf(e.path)) return;
  const to = join(parentOf(e.path), name);
  await mutate('rename', () => commitOne({ op: 'move', from: e.path, to, parent_rev: e.rev }), `Renamed to ${name}`);
}

async function move(path, folder) {
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
    if (path !== folder) move(path, folder);
  });
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

// ---------- preview and history ----------

async function preview(e) {
  const name = nameOf(e.path);
  const box = h('div', { class: 'preview' }, h('p', {}, 'Loading…'));
  const shown = dialog(name, [box, h('p', {}, h('a', { href: api.downloadUrl(e.path), download: name }, 'Download'))]);
  let url;
  try {
    if (TEXT.test(name)) {
      const resp = await fetch(api.downloadUrl(e.path), { headers: { range: 'bytes=0-1048575' } });
      if (!resp.ok && resp.status !== 206) throw new ApiError(resp.status, 'error', `preview failed (${resp.status})`);
      const text = await resp.text();
      box.replaceChildren(h('pre', { class: 'text' }, text), e.size > 1048576 ? h('p', {}, '(first 1 MB shown)') : '');
    } else {
      const resp = await fetch(api.downloadUrl(e.path));
      if (!resp.ok) throw new ApiError(resp.status, 'error', `preview failed (${resp.status})`);
      const type = PDF.test(name) ? 'application/pdf' : name.toLowerCase().endsWith('.svg') ? 'image/svg+xml' : '';
      url = URL.createObjectURL(new Blob([await resp.arrayBuffer()], { type }));
      box.replaceChildren(PDF.test(name)
        ? h('iframe', { src: url, title: name, class: 'pdf' })
        : h('img', { src: url, alt: name }));
    }
  } catch (err) {
    box.replaceChildren(h('p', { class: 'error' }, err.message));
  }
  await shown;
  if (url) URL.revokeObjectURL(url);
}

async function history(e) {
  const table = h('div', { class: 'revisions' }, h('p', {}, 'Loading…'));
  const shown = dialog(`History of ${nameOf(e.path)}`, table);
  try {
    const { revisions } = await api.revisions(e.path);
    const head = revisions[0]?.rev;
    table.replaceChildren(...revisions.map((r) =>
      h('div', { class: 'revision', dataset: { rev: r.rev } },
        h('span', { class: 'when' }, new Date(r.modified).toLocaleString()),
        h('span', {}, r.deleted ? 'deleted' : formatBytes(r.size)),
        h('span', { class: 'device' }, r.device),
        r.deleted ? h('span') : h('a', { href: api.downloadUrl(e.path, r.rev), download: nameOf(e.path) }, 'Download'),
        r.deleted || r.rev === head ? h('span', { class: 'muted' }, r.rev === head ? 'current' : '')
          : h('button', { type: 'button', onclick: async () => {
            $('dialog').close();
            await mutate('restore', () => commitOne({ op: 'restore', path: e.path, rev: r.rev }),
              `Restored the version of ${new Date(r.modified).toLocaleString()}`);
          } }, 'Restore'))));
  } catch (err) {
    table.replaceChildren(h('p', { class: 'error' }, err.message));
  }
  await shown;
}

// ---------- sharing and links ----------

const EXPIRY = [['Never', ''], ['1 day', 86400], ['7 days', 7 * 86400], ['30 days', 30 * 86400]];

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Link copied');
  } catch {
    toast(`Copy this link: ${text}`);
  }
}

function linkRow(l, after) {
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

async function shareDialog(e) {
  const name = nameOf(e.path);
  const people = h('div', { class: 'people' });
  const links = h('div', { class: 'links' });
  const body = [];
  const refresh = async () => {
    try {
      if (e.kind === 'dir') {
        const { shares } = await api.shares();
        state.shares = shares;
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
              await mutate('leave', () => api.removeMember(share.id, state.session.user), `Left ${name}`);
            } }, 'Leave this folder'),
        );
      }
      // The server links to what is in a shared folder, not to the folder.
      if (e.kind === 'dir' && state.shares?.some((s) => s.path === e.path)) {
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

// ---------- other views ----------

function page(title, ...content) {
  $('main').replaceChildren(h('div', { class: 'page' }, h('h2', {}, title), ...content));
}

async function showTrash() {
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

async function showShared() {
  const { shares } = await api.shares();
  state.shares = shares;
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

async function showLinks() {
  const { links } = await api.links();
  page('Links', links.length
    ? links.map((l) => h('div', { class: 'row-static' },
      h('span', { class: 'grow' }, l.path || '(deleted)'), linkRow(l, showLinks)))
    : h('p', { class: 'empty' }, 'No links. Make one from a file’s or folder’s Share… action.'));
}

function describe(ev) {
  const verb = { add: 'added', modify: 'edited', delete: 'deleted', move: 'moved', mkdir: 'made folder', rmdir: 'deleted folder' }[ev.op];
  const what = ev.op === 'move' ? `${ev.from} → ${ev.path}` : ev.path;
  return `${ev.user} ${verb} ${what}`;
}

async function showActivity() {
  const { events } = await api.activity(100);
  page('Activity', events.length
    ? events.map((ev) => h('div', { class: 'event row-static' },
      h('span', { class: 'grow' }, describe(ev)),
      h('span', { class: 'muted' }, `${formatTime(ev.time)} · ${ev.device}`)))
    : h('p', { class: 'empty' }, 'Nothing happened yet.'));
}

// ---------- notifications (long poll) ----------

let watching = null;
function stopWatching() {
  watching?.abort();
  watching = null;
}

async function watch() {
  stopWatching();
  const ctl = new AbortController();
  watching = ctl;
  let cursor = 0;
  try {
    const first = await api.poll(0, 0, ctl.signal);
    cursor = first.cursor;
    const { events } = await api.activity(20);
    state.lastSeq = events[0]?.seq ?? 0;
    state.events = events;
    state.shares = (await api.shares()).shares;
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
  if (state.view === 'files') reloadFolder();
  else if (state.view !== 'links') route();
  refreshAccount();
  const { events } = await api.activity(50);
  const fresh = events.filter((ev) => ev.seq > state.lastSeq);
  if (events.length) state.lastSeq = Math.max(state.lastSeq, events[0].seq);
  state.events = events;
  const others = fresh.filter((ev) => ev.device !== state.session.device);
  const { shares } = await api.shares();
  const known = new Set(state.shares.map((s) => s.id));
  const ids = new Set(shares.map((s) => s.id));
  const notes = [];
  for (const s of shares) {
    if (!known.has(s.id) && s.role !== 'owner') notes.push(`${s.owner} shared ${s.path} with you (${s.role})`);
  }
  for (const s of state.shares) {
    if (!ids.has(s.id) && s.role !== 'owner') notes.push(`Your access to ${s.path} (shared by ${s.owner}) was removed`);
  }
  state.shares = shares;
  // Items appearing because a folder was shared are said once, as the share.
  const sharedNow = notes.length ? others.filter((ev) => !shares.some((s) => ev.path.startsWith(s.path))) : others;
  notes.push(...sharedNow.slice(0, 5).map(describe));
  if (sharedNow.length > 5) notes.push(`and ${sharedNow.length - 5} more changes`);
  for (const n of notes) toast(n, 'note');
  state.unread += notes.length;
  const badge = $('badge');
  badge.hidden = state.unread === 0;
  badge.textContent = state.unread > 99 ? '99+' : String(state.unread);
}

$('bell').addEventListener('click', (e) => {
  e.stopPropagation();
  const panel = $('notes');
  if (!panel.hidden) {
    panel.hidden = true;
    return;
  }
  state.unread = 0;
  $('badge').hidden = true;
  panel.replaceChildren(h('h3', {}, 'Recent changes'),
    ...(state.events.length ? state.events.slice(0, 20).map((ev) => h('div', { class: 'event' },
      h('span', {}, describe(ev)), h('small', { class: 'muted' }, `${formatTime(ev.time)} · ${ev.device}`)))
      : [h('p', { class: 'muted' }, 'Nothing yet.')]),
    h('a', { href: '#/activity', onclick: () => { panel.hidden = true; } }, 'All activity'));
  panel.hidden = false;
});
document.addEventListener('click', (e) => {
  const panel = $('notes');
  if (!panel.hidden && !panel.contains(e.target) && e.target !== $('bell')) panel.hidden = true;
});

// ---------- uploads ----------

const uploads = new Uploads(renderUploads, () => {
  scheduleReload();
});

let reloadTimer = null;
function scheduleReload() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => {
    reloadFolder();
    refreshAccount();
  }, 150);
}

let uploadsFrame = 0;
function renderUploads(jobs) {
  if (uploadsFrame) return;
  uploadsFrame = requestAnimationFrame(() => {
    uploadsFrame = 0;
    drawUploads(jobs);
  });
}

function drawUploads(jobs) {
  const panel = $('uploads');
  panel.hidden = jobs.length === 0;
  if (!jobs.length) return;
  const { sent, size } = uploads.totals();
  const active = jobs.filter((j) => j.state === 'sending' || j.state === 'queued').length;
  const pct = size ? Math.floor((sent / size) * 100) : 100;
  panel.replaceChildren(
    h('div', { class: 'uploads-head' },
      h('b', {}, active ? `Uploading ${active} file${active === 1 ? '' : 's'} — ${pct}%` : 'Uploads finished'),
      active ? '' : h('button', { onclick: () => uploads.clearFinished() }, 'Clear')),
    h('progress', { class: 'overall', max: 100, value: pct, 'aria-label': 'All uploads' }),
    h('div', { class: 'jobs' }, jobs.slice(-50).map((j) =>
      h('div', { class: `job ${j.state}`, dataset: { path: j.path, state: j.state, resumedFrom: j.resumedFrom } },
        h('span', { class: 'job-name', title: j.path }, nameOf(j.path)),
        h('progress', { max: j.file.size || 1, value: j.state === 'done' ? j.file.size || 1 : j.sent,
          'aria-label': `Upload of ${nameOf(j.path)}` }),
        h('small', { class: 'job-state' }, j.state === 'failed' ? j.error
          : j.state === 'done' ? 'done' : j.retrying ? 'connection lost — retrying'
            : j.state === 'queued' ? 'waiting' : `${formatBytes(j.sent)} of ${formatBytes(j.file.size)}`),
        j.state === 'sending' || j.state === 'queued'
          ? h('button', { class: 'icon-button', 'aria-label': `Cancel ${nameOf(j.path)}`, onclick: () => uploads.cancel(j) }, '✕')
          : ''))),
  );
}

function room() {
  return state.account ? Math.max(0, state.account.quota - state.account.used) : undefined;
}

async function upload(items, folders = []) {
  if (state.view !== 'files') return;
  if (folders.length) {
    try {
      await api.commit(folders.map((f) => ({ op: 'mkdir', path: join(state.path, f) })));
    } catch (e) {
      fail(e);
    }
  }
  const base = state.path;
  for (const msg of uploads.add(items.map(({ file, rel }) => ({ file, path: join(base, rel) })), room())) {
    toast(msg, 'error');
  }
  if (folders.length) scheduleReload();
}

$('pick-files').addEventListener('change', (e) => {
  upload([...e.target.files].map((file) => ({ file, rel: file.name })));
  e.target.value = '';
});
$('pick-folder').addEventListener('change', (e) => {
  upload([...e.target.files].map((file) => ({ file, rel: file.webkitRelativePath || file.name })));
  e.target.value = '';
});

/// Files and folders of a drop, read recursively where the browser gives
/// entries (a dropped folder), else the plain files.
async function dropped(dt) {
  const files = [];
  const folders = [];
  const entries = [...dt.items].map((i) => (i.kind === 'file' && i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  if (!entries.some((e) => e && e.isDirectory)) {
    return { files: [...dt.files].map((file) => ({ file, rel: file.name })), folders };
  }
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      files.push({ file, rel: prefix + entry.name });
    } else if (entry.isDirectory) {
      folders.push(prefix + entry.name);
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const e of entries) if (e) await walk(e, '');
  return { files, folders };
}

let dragDepth = 0;
const external = (ev) => ev.dataTransfer && [...ev.dataTransfer.types].includes('Files');
document.addEventListener('dragenter', (ev) => {
  if (!external(ev) || state.view !== 'files' || !state.session) return;
  dragDepth++;
  $('drop-target').textContent = visible(state.path || 'Files');
  $('drop').hidden = false;
});
document.addEventListener('dragleave', (ev) => {
  if (!external(ev)) return;
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) $('drop').hidden = true;
});
document.addEventListener('dragover', (ev) => {
  if (external(ev)) ev.preventDefault();
});
document.addEventListener('drop', async (ev) => {
  if (!external(ev)) return;
  ev.preventDefault();
  dragDepth = 0;
  $('drop').hidden = true;
  if (state.view !== 'files' || !state.session) return;
  try {
    const { files, folders } = await dropped(ev.dataTransfer);
    upload(files, folders);
  } catch (e) {
    fail(e);
  }
});

// ---------- filter ----------

$('filter').addEventListener('input', (e) => {
  state.filter = e.target.value;
  if (state.view === 'files') {
    $('list').scrollTop = 0;
    applyFilter();
  }
});

// ---------- start ----------

(async () => {
  try {
    await start(await api.session());
  } catch (e) {
    showLogin(e.status === 401 ? '' : e.message);
  }
})();

export { MAX_FILE_SIZE };
