// Shows the view the URL's hash names, and marks it in the side bar.

import { $ } from './dom.js';
import { showFolder } from './folder.js';
import { showActivity, showLinks, showShared, showTrash } from './pages.js';
import { parentOf } from './paths.js';
import { currentPath, currentView, go, readHash } from './place.js';
import { closeMenu, fail } from './ui.js';

export async function route() {
  closeMenu();
  readHash();
  const view = currentView();
  for (const a of document.querySelectorAll('nav.side a')) {
    a.classList.toggle('active', a.dataset.view === view);
  }
  $('filter').hidden = view !== 'files';
  try {
    if (view === 'files') await showFolder();
    else if (view === 'trash') await showTrash();
    else if (view === 'shared') await showShared();
    else if (view === 'links') await showLinks();
    else await showActivity();
  } catch (e) {
    fail(e);
    if (e.status === 404 && currentView() === 'files' && currentPath()) go(parentOf(currentPath()));
  }
}
