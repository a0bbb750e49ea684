// A file's versions: listed in a dialog, each to download, any but the
// current one to restore.

import { api } from './api.js';
import { commitOne, mutate } from './change.js';
import { $, h } from './dom.js';
import { formatBytes } from './format.js';
import { nameOf } from './paths.js';
import { dialog } from './ui.js';

export async function history(e) {
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
