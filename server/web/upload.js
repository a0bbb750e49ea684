// Uploads through the resumable API (POST /files/upload?uploadType=resumable,
// then PUTs with Content-Range). A session's URL is kept in localStorage
// until the file is complete, so an upload resumes after a dropped
// connection, a server restart, or a reload of the page (pick the same
// file again). Several files go at once; each reports its progress.

import { ApiError, call, csrfToken } from './api.js';

export const MAX_FILE_SIZE = 10 * 1024 ** 3;
const PARALLEL = 3;
const STORE_KEY = 'ferry.uploads';

/// Chunk size: large enough that a request's fixed cost is small, small
/// enough that a dropped connection loses little.
const chunkSize = (size) => (size > 256 * 1024 ** 2 ? 64 : 16) * 1024 ** 2;

function stored() {
  try {
    return JSON.parse(localStorage.getItem(STORE_KEY) || '{}');
  } catch {
    return {};
  }
}

function remember(key, value) {
  const all = stored();
  if (value) all[key] = value;
  else delete all[key];
  localStorage.setItem(STORE_KEY, JSON.stringify(all));
}

/// Uploads started on this browser and not finished (for the page to say
/// which files to pick again).
export function unfinished() {
  const now = Date.now();
  return Object.values(stored()).filter((u) => u.expires > now);
}

const keyOf = (path, file) => `${path}\n${file.size}\n${file.lastModified}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// One PUT by XMLHttpRequest (fetch cannot report upload progress).
function put(url, headers, body, onProgress, job) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    job.xhr = xhr;
    xhr.open('PUT', url);
    xhr.setRequestHeader('x-csrf-token', csrfToken());
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => resolve(xhr);
    xhr.onerror = () => reject(new ApiError(0, 'offline', 'the connection was lost'));
    xhr.onabort = () => reject(new ApiError(0, 'cancelled', 'cancelled'));
    xhr.send(body);
  });
}

/// What the server holds of a session: a byte count, or the finished file.
function parse(xhr) {
  if (xhr.status === 200 || xhr.status === 201) return { done: JSON.parse(xhr.responseText) };
  if (xhr.status === 308) {
    const range = xhr.getResponseHeader('range');
    return { received: range ? Number(range.split('-')[1]) + 1 : 0 };
  }
  let message = `${xhr.status} ${xhr.statusText}`;
  let code = 'error';
  try {
    const body = JSON.parse(xhr.responseText);
    message = body.error.message;
    code = body.error.code;
  } catch {
    // keep the status line
  }
  throw new ApiError(xhr.status, code, message);
}

const transient = (e) => e.status === 0 || e.status >= 500 || e.status === 409 || e.status === 429;

export class Uploads {
  /// `onChange(jobs)` is called whenever a job moves; `onDone(entry)` when
  /// a file is complete.
  constructor(onChange, onDone) {
    this.jobs = [];
    this.onChange = onChange;
    this.onDone = onDone;
    this.running = 0;
  }

  /// Queues `[{file, path}]`. Returns the refusals known before sending
  /// (too large, over the quota).
  add(items, room) {
    const refused = [];
    let total = 0;
    for (const { file, path } of items) {
      if (file.size > MAX_FILE_SIZE) {
        refused.push(`${path} is larger than 10 GiB, the most one file can be`);
        continue;
      }
      total += file.size;
      if (room !== undefined && total > room) {
        refused.push(`${path} does not fit: the account's quota would be exceeded (delete files or ask for more space)`);
        total -= file.size;
        continue;
      }
      this.jobs.push({ file, path, sent: 0, state: 'queued', error: '', started: 0, finished: 0 });
    }
    this.pump();
    this.changed();
    return refused;
  }

  changed() {
    this.onChange(this.jobs);
  }

  /// Bytes sent and to send over the jobs not yet cleared.
  totals() {
    let sent = 0;
    let size = 0;
    for (const j of this.jobs) {
      if (j.state === 'failed' || j.state === 'cancelled') continue;
      sent += j.sent;
      size += j.file.size;
    }
    return { sent, size };
  }

  cancel(job) {
    job.cancelled = true;
    job.xhr?.abort();
    remember(keyOf(job.path, job.file), null);
  }

  clearFinished() {
    this.jobs = this.jobs.filter((j) => !['done', 'failed', 'cancelled'].includes(j.state));
    this.changed();
  }

  pump() {
    while (this.running < PARALLEL) {
      const job = this.jobs.find((j) => j.state === 'queued');
      if (!job) return;
      this.running++;
      job.state = 'sending';
      job.started = performance.now();
      this.run(job)
        .then((entry) => {
          job.state = 'done';
          job.sent = job.file.size;
          job.finished = performance.now();
          this.onDone(entry);
        })
        .catch((e) => {
          job.state = job.cancelled ? 'cancelled' : 'failed';
          job.error = e.message;
        })
        .finally(() => {
          this.running--;
          this.changed();
          this.pump();
        });
    }
  }

  async session(job) {
    const key = keyOf(job.path, job.file);
    const known = stored()[key];
    if (known && known.expires > Date.now()) return known.url;
    const started = await call('POST', '/files/upload?uploadType=resumable', {
      path: job.path,
      size: job.file.size,
      mtime: job.file.lastModified,
    });
    remember(key, { url: started.upload_url, expires: started.expires, path: job.path, name: job.file.name });
    return started.upload_url;
  }

  async run(job) {
    const { file } = job;
    const key = keyOf(job.path, file);
    let url = await this.session(job);
    let failures = 0;
    let offset = null; // unknown: ask the server first
    for (;;) {
      if (job.cancelled) throw new ApiError(0, 'cancelled', 'cancelled');
      try {
        let state;
        if (offset === null || file.size === 0) {
          state = parse(await put(url, { 'content-range': `bytes */${file.size}` }, null, () => {}, job));
        } else {
          const end = Math.min(offset + chunkSize(file.size), file.size);
          const range = `bytes ${offset}-${end - 1}/${file.size}`;
          const base = offset;
          state = parse(
            await put(url, { 'content-range': range }, file.slice(offset, end), (n) => {
              job.sent = base + n;
              this.changed();
            }, job),
          );
        }
        failures = 0;
        job.retrying = false;
        if (state.done) {
          remember(key, null);
          return state.done;
        }
        if (offset === null && job.resumedFrom === undefined) job.resumedFrom = state.received;
        offset = state.received;
        job.sent = offset;
      } catch (e) {
        if (e.code === 'cancelled') throw e;
        if (e.status === 404) {
          // The session expired or the server forgot it: start again.
          remember(key, null);
          url = await this.session(job);
          offset = null;
          continue;
        }
        if (!transient(e) || failures >= 12) throw e;
        failures++;
        job.retrying = true;
        this.changed();
        await sleep(Math.min(500 * 2 ** failures, 10000));
        offset = null; // ask what arrived
      }
    }
  }
}
