// The page's side of uploads (upload.js does the protocol): the two
// pickers, files and folders dropped on the page, and the panel of their
// progress; the folder shown again as files arrive.

import { api } from './api.js';
import { refreshAccount, room } from './account.js';
import { $, h, visible } from './dom.js';
import { reloadFolder } from './folder.js';
import { formatBytes } from './format.js';
import { join, nameOf } from './paths.js';
import { currentPath, currentView } from './place.js';
import { session } from './session.js';
import { fail, toast } from './ui.js';
import { Uploads } from './upload.js';

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

async function upload(items, folders = []) {
  if (currentView() !== 'files') return;
  if (folders.length) {
    try {
      await api.commit(folders.map((f) => ({ op: 'mkdir', path: join(currentPath(), f) })));
    } catch (e) {
      fail(e);
    }
  }
  const base = currentPath();
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
  if (!external(ev) || currentView() !== 'files' || !session()) return;
  dragDepth++;
  $('drop-target').textContent = visible(currentPath() || 'Files');
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
  if (currentView() !== 'files' || !session()) return;
  try {
    const { files, folders } = await dropped(ev.dataTransfer);
    upload(files, folders);
  } catch (e) {
    fail(e);
  }
});
