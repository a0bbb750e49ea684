// What floats over the views: toasts, the one open menu, modal dialogs;
// and `fail`, how an error is told.

import { ApiError } from './api.js';
import { $, h } from './dom.js';
import { end } from './session.js';

export function toast(message, kind = 'info') {
  const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  $('toasts').append(t);
  // A burst shows its latest few, not a wall.
  while ($('toasts').children.length > 4) $('toasts').firstElementChild.remove();
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 5000);
}

export function fail(e) {
  if (e instanceof ApiError && e.status === 401) {
    end('Your session ended: log in again.');
    return;
  }
  toast(e.message || String(e), 'error');
}

let openMenu = null;
export function closeMenu() {
  openMenu?.remove();
  openMenu = null;
}
document.addEventListener('click', (e) => {
  if (openMenu && !openMenu.contains(e.target)) closeMenu();
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') closeMenu();
});

export function menu(anchor, items) {
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
export function dialog(title, body, buttons = [['Close', null]]) {
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

export async function ask(title, label, value = '') {
  const data = await dialog(title, h('label', {}, label, h('input', { name: 'value', value, required: true })), [
    ['Cancel', null],
    ['OK', 'ok', 'primary'],
  ]);
  return data ? data.get('value').trim() : null;
}
