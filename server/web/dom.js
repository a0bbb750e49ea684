// Making elements, and showing text safely: every text a person reads goes
// through `visible`, which marks characters that hide themselves.

export const $ = (id) => document.getElementById(id);

// Characters that change how a name reads without showing themselves
// (bidirectional overrides and isolates, zero-width and other invisible
// ones): shown as [U+XXXX] wherever the page shows text, so that
// "evil\u202Etxt.exe" cannot pass for "evilexe.txt". A joiner between two
// non-ASCII characters (emoji sequences, Persian words) is writing and
// stays. The same rule as `ferry_shared::path::visible`.
const HIDDEN = /[\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\u3164\uFEFF\uFFA0]/g;
export function visible(text) {
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

/// Makes an element: `h('button', {class: 'x', onclick: f}, 'text', child)`.
export function h(tag, attrs = {}, ...children) {
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
