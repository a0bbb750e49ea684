// Who is logged in: the session the server gave this page, held here
// alone. Ending it (logging out, or a 401 anywhere) forgets it and does
// what app.js asked (the login form).

import { setCsrf } from './api.js';

let current = null;
let ended = () => {};

/// The session, or null when logged out.
export const session = () => current;

export function begin(s) {
  current = s;
  setCsrf(s.csrf);
}

/// What ending a session does besides forgetting it: `fn(message)`, set
/// once by app.js (which imports every module that can end one).
export function whenEnded(fn) {
  ended = fn;
}

export function end(message = '') {
  current = null;
  ended(message);
}
