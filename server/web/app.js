// Ferry's web app: plain ES modules, no build step. Views follow the URL's
// hash (#/files/PATH, #/shared, #/links, #/trash, #/activity); the folder
// list is virtual (only the rows in view exist), so a folder of 10,000
// entries stays responsive. Changes made elsewhere arrive by long poll.
//
// This module starts the page: logging in and out, and wiring the modules
// together. Each of the others owns one part of the page and its state:
//   dom.js            making elements; `visible` for every text shown
//   format.js         sizes, times and events as text
//   paths.js          a path's name, folder and kind of file
//   session.js        who is logged in
//   place.js          the view and folder the hash names
//   ui.js             toasts, menus, dialogs, errors
//   account.js        storage used and room left
//   router.js         shows the view the hash names
//   folder.js         the folder view (virtual list, sort, filter, crumbs)
//   items.js          an item's menu and its changes (rename, move, delete)
//   change.js         one commit, then the folder shown again
//   preview.js        previews and downloads
//   history.js        a file's versions
//   sharing.js        the Share… dialog, links, the shares known
//   pages.js          trash, shared, links and activity views
//   notifications.js  the long poll, toasts of news, the bell
//   upload-ui.js      pickers, drops and the uploads panel
//   api.js, upload.js the server's API and its resumable uploads

import { api } from './api.js';
import { refreshAccount } from './account.js';
import { $, visible } from './dom.js';
import { offer } from './folder.js';
import { actionsOf, move, newFolder, open } from './items.js';
import { stopWatching, watch } from './notifications.js';
import { route } from './router.js';
import { begin, end, session, whenEnded } from './session.js';
import { fail, menu, toast } from './ui.js';
import { unfinished } from './upload.js';
import './upload-ui.js';

offer({ actionsOf, open, newFolder, move });
whenEnded(showLogin);

// ---------- session ----------

function showLogin(message) {
  stopWatching();
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('login-form').username.focus();
}

async function start(s) {
  begin(s);
  $('login').hidden = true;
  $('app').hidden = false;
  $('me').textContent = s.user;
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
    [`Logged in as ${session().user}`, () => {}, 'muted'],
    ['Log out', async () => {
      try {
        await api.logout();
      } catch (err) {
        fail(err);
      }
      end('Logged out.');
    }],
  ]);
});

window.addEventListener('hashchange', () => session() && route());

// ---------- start ----------

(async () => {
  try {
    await start(await api.session());
  } catch (e) {
    end(e.status === 401 ? '' : e.message);
  }
})();
