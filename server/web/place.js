// Where the page is: the view and the folder the URL's hash names
// (#/files/PATH, #/shared, #/links, #/trash, #/activity). Only `readHash`
// (the router's) sets them; views read them.

const VIEWS = ['files', 'shared', 'links', 'trash', 'activity'];

let view = 'files';
let path = '';

export function readHash() {
  const hash = decodeURIComponent(location.hash.slice(1) || '/files/');
  const [, named, ...rest] = hash.split('/');
  view = VIEWS.includes(named) ? named : 'files';
  path = view === 'files' ? rest.filter(Boolean).join('/') : '';
}

/// 'files', 'shared', 'links', 'trash' or 'activity'.
export const currentView = () => view;
/// The folder shown ('' for the top; '' outside the files view).
export const currentPath = () => path;

export const hrefOf = (folder) => `#/files/${folder.split('/').map(encodeURIComponent).join('/')}`;
export function go(folder) {
  location.hash = hrefOf(folder);
}
