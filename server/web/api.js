// The server's API as the page uses it: every call is in /openapi.json.
// The session is an HttpOnly cookie; requests that change something carry
// the session's CSRF token.

let csrf = '';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function setCsrf(token) {
  csrf = token;
}

export function csrfToken() {
  return csrf;
}

async function errorOf(resp) {
  let code = 'error';
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code;
      message = body.error.message;
    }
  } catch {
    // not JSON: keep the status line
  }
  if (resp.status === 429) {
    const wait = resp.headers.get('retry-after');
    if (wait) message += ` (try again in ${wait} s)`;
  }
  return new ApiError(resp.status, code, message);
}

export async function call(method, url, body, { signal } = {}) {
  const headers = {};
  if (method !== 'GET') headers['x-csrf-token'] = csrf;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'offline', 'the server cannot be reached: check the connection');
  }
  if (!resp.ok) throw await errorOf(resp);
  if (resp.status === 204) return null;
  const type = resp.headers.get('content-type') || '';
  return type.startsWith('application/json') ? resp.json() : resp;
}

const q = (params) =>
  Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');

export const api = {
  session: () => call('GET', '/auth/session'),
  login: (username, password) => call('POST', '/auth/session', { username, password }),
  logout: () => call('DELETE', '/auth/session'),
  account: () => call('GET', '/account'),
  list: (path) => call('GET', `/files/list?${q({ path })}`),
  commit: (ops) => call('POST', '/commit', { ops }),
  remove: (path) => call('POST', '/files/delete', { path }),
  revisions: (path) => call('GET', `/files/list_revisions?${q({ path, limit: 200 })}`),
  trash: () => call('GET', '/trash'),
  restoreDeleted: (path) => call('POST', '/trash/restore', { path }),
  shares: () => call('GET', '/shares'),
  share: (path, withUser, role) => call('POST', '/shares', { path, with: withUser, role }),
  setRole: (id, user, role) => call('PUT', `/shares/${id}/members/${encodeURIComponent(user)}`, { role }),
  removeMember: (id, user) => call('DELETE', `/shares/${id}/members/${encodeURIComponent(user)}`),
  unshare: (id) => call('DELETE', `/shares/${id}`),
  links: () => call('GET', '/links'),
  createLink: (path, expiresIn, password) =>
    call('POST', '/links', { path, expires_in: expiresIn || undefined, password: password || undefined }),
  revokeLink: (id) => call('DELETE', `/links/${id}`),
  activity: (limit = 50) => call('GET', `/activity?${q({ limit })}`),
  poll: (cursor, timeout, signal) => call('GET', `/changes/poll?${q({ cursor, timeout })}`, undefined, { signal }),
  downloadUrl: (path, rev) => `/files/download?${q({ path, rev })}`,
  zipUrl: (path) => `/files/zip?${q({ path })}`,
};
