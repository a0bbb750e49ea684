// Looking at a file: a preview in a dialog (text, an image in an <img>,
// a PDF in the browser's viewer, from a blob of the bytes), and downloads.

import { api, ApiError } from './api.js';
import { h } from './dom.js';
import { nameOf, PDF, TEXT } from './paths.js';
import { dialog } from './ui.js';

export function download(path, rev) {
  const a = h('a', { href: api.downloadUrl(path, rev), download: nameOf(path) });
  document.body.append(a);
  a.click();
  a.remove();
}

export async function preview(e) {
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
