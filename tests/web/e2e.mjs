// Ferry's web app in headless Chromium, as a person uses it. Run by
// tests/tests/e2e/web.rs, which holds the real server and daemon and answers
// requests written as `@@ferry {json}` lines (see `host`).
//
// Environment: FERRY_URL, FERRY_CHROMIUM, FERRY_FILES (big.bin, mid.bin,
// huge.bin made by the Rust side), FERRY_ARTIFACTS (screenshots),
// FERRY_WEB_FIGURES=1 (also measure and print figures).

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const URL_ = process.env.FERRY_URL;
const FILES = process.env.FERRY_FILES;
const ARTIFACTS = process.env.FERRY_ARTIFACTS;
const FIGURES = process.env.FERRY_WEB_FIGURES === '1';

const replies = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
/// Asks the Rust side to do something only it can (restart the server...).
async function host(cmd) {
  console.log(`@@ferry ${JSON.stringify(cmd)}`);
  const { value, done } = await replies.next();
  if (done) throw new Error('the test host went away');
  return JSON.parse(value);
}

const browser = await chromium.launch({
  executablePath: process.env.FERRY_CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

const failures = [];
/// Every API call the pages made (`METHOD /path`), checked against /openapi.json.
const called = new Set();
const pages = [];
/// Page errors and console errors: any one fails the step it happened in.
const pageErrors = [];
/// The API calls each page made, in order (`METHOD /path`).
const sentBy = new WeakMap();
async function step(name, fn) {
  const t0 = Date.now();
  const errorsBefore = pageErrors.length;
  try {
    await fn();
    const errors = pageErrors.slice(errorsBefore);
    if (errors.length) throw new Error(`errors on the page:\n  ${errors.join('\n  ')}`);
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failures.push(name);
    console.log(`FAIL ${name}: ${e.stack || e}`);
    for (const [i, p] of pages.entries()) {
      await p.screenshot({ path: join(ARTIFACTS, `fail-${name.replace(/\W+/g, '-')}-${i}.png`) }).catch(() => {});
      // The next step starts from the top folder with no dialog open.
      await p.evaluate(() => {
        document.querySelectorAll('dialog[open]').forEach((d) => d.close());
        location.hash = '#/files/';
      }).catch(() => {});
    }
  }
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

async function newPage(options = {}) {
  const context = await browser.newContext({ baseURL: URL_, acceptDownloads: true, ...options });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on('pageerror', (e) => pageErrors.push(`page error: ${e.message}`));
  // An answer the app expects (a 404 it shows as a message) is not an error
  // of the page: the browser's own "Failed to load resource" lines are left out.
  page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource')
    && pageErrors.push(`console error: ${m.text()}`));
  const sent = [];
  sentBy.set(page, sent);
  page.on('request', (r) => {
    if (['fetch', 'xhr'].includes(r.resourceType())) {
      const call = `${r.method()} ${new URL(r.url()).pathname}`;
      called.add(call);
      sent.push(call);
    }
  });
  pages.push(page);
  return page;
}

async function login(page, user, password = `password-${user}`) {
  await page.goto('/');
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#list');
}

const row = (page, name) => page.locator(`.row[data-name="${name}"]`);
async function rowAction(page, name, action) {
  await row(page, name).locator('.more').click();
  await page.locator('.menu button', { hasText: action }).click();
}
async function closeDialog(page) {
  await page.keyboard.press('Escape');
  await page.waitForSelector('dialog[open]', { state: 'detached' }).catch(() => {});
  await page.locator('dialog').evaluate((d) => d.open && d.close());
}
const fetchText = (page, url) => page.evaluate((u) => fetch(u).then((r) => r.text()), url);
async function waitDone(page, path, timeout = 60000) {
  await page.waitForSelector(`.job[data-path="${path}"][data-state="done"]`, { timeout });
}
async function toastWith(page, text, timeout = 15000) {
  await page.locator('.toast', { hasText: text }).first().waitFor({ timeout });
}

// A 1×1 PNG.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');

const alice = await newPage({ viewport: { width: 1280, height: 800 } });

await step('login: a wrong password is refused with a message, the right one opens the files', async () => {
  await alice.goto('/');
  await alice.fill('input[name=username]', 'alice');
  await alice.fill('input[name=password]', 'not-it');
  await alice.click('#login-form button[type=submit]');
  await alice.locator('#login-error', { hasText: 'wrong user name or password' }).waitFor();
  await login(alice, 'alice');
  check(await alice.locator('#usage-text').textContent(), 'usage is shown');
  const cookies = await alice.context().cookies();
  const session = cookies.find((c) => c.name === 'ferry_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', 'the session cookie is HttpOnly, SameSite=Strict');
  check(await alice.evaluate(() => !document.cookie.includes('ferry_session')), 'no script can read the session');
  // A request that changes something without the CSRF token is refused.
  const status = await alice.evaluate(() =>
    fetch('/commit', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ops: [{ op: 'mkdir', path: 'csrf' }] }) }).then((r) => r.status));
  check(status === 403, `a commit without X-CSRF-Token is refused (got ${status})`);
});

await step('upload with the file picker', async () => {
  await alice.setInputFiles('#pick-files', [
    { name: 'hello.txt', mimeType: 'text/plain', buffer: Buffer.from('hello from the browser\n') },
    { name: 'dot.png', mimeType: 'image/png', buffer: PNG },
  ]);
  await waitDone(alice, 'hello.txt');
  await waitDone(alice, 'dot.png');
  await row(alice, 'hello.txt').waitFor();
  await row(alice, 'dot.png').waitFor();
});

await step('upload a whole folder with the folder picker', async () => {
  await alice.setInputFiles('#pick-folder', join(FILES, 'album'));
  await waitDone(alice, 'album/sub/b.txt');
  await row(alice, 'album').locator('.name').click();
  await row(alice, 'a.txt').waitFor();
  await row(alice, 'sub').locator('.name').click();
  await row(alice, 'b.txt').waitFor();
  await alice.click('.crumbs a[data-path=""]');
  await row(alice, 'album').waitFor();
});

await step('upload by dropping files on the page (a real drop event)', async () => {
  await alice.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['dropped bytes\n'], 'dropped.txt', { type: 'text/plain' }));
    dt.items.add(new File(['second\n'], 'second.txt', { type: 'text/plain' }));
    const list = document.getElementById('list');
    for (const type of ['dragenter', 'dragover', 'drop']) {
      list.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
    }
  });
  await waitDone(alice, 'dropped.txt');
  await row(alice, 'dropped.txt').waitFor();
  await row(alice, 'second.txt').waitFor();
  check(await alice.locator('#drop').isHidden(), 'the drop overlay is gone');
});

await step('download gives the same bytes; a folder downloads as a zip', async () => {
  const [download] = await Promise.all([alice.waitForEvent('download'), rowAction(alice, 'hello.txt', 'Download')]);
  const bytes = await readFile(await download.path());
  check(bytes.toString() === 'hello from the browser\n', `downloaded: ${JSON.stringify(bytes.toString())}`);
  check(download.suggestedFilename() === 'hello.txt', 'named as the file');
  const [zip] = await Promise.all([alice.waitForEvent('download'), alice.click('a.button:has-text("Download all")')]);
  const z = await readFile(await zip.path());
  check(z.subarray(0, 2).toString() === 'PK' && z.includes(Buffer.from('dropped.txt')), 'a zip with the files');
});

await step('preview text and an image in the page', async () => {
  await row(alice, 'hello.txt').locator('.name').click();
  await alice.locator('dialog .preview pre', { hasText: 'hello from the browser' }).waitFor();
  await closeDialog(alice);
  await row(alice, 'dot.png').locator('.name').click();
  await alice.waitForFunction(() => document.querySelector('dialog .preview img')?.naturalWidth === 1);
  await closeDialog(alice);
});

await step('new folder, rename, move by dialog and by dragging onto a folder', async () => {
  await alice.click('#new-folder');
  await alice.fill('dialog input', 'Docs');
  await alice.click('dialog button.primary');
  await row(alice, 'Docs').waitFor();
  await rowAction(alice, 'hello.txt', 'Rename');
  await alice.fill('dialog input', 'greeting.txt');
  await alice.click('dialog button.primary');
  await row(alice, 'greeting.txt').waitFor();
  await rowAction(alice, 'greeting.txt', 'Move');
  await alice.click('dialog .folder[data-path="Docs"]');
  await alice.locator('dialog .where', { hasText: 'Move to: Docs' }).waitFor();
  await alice.click('dialog button.primary');
  await row(alice, 'greeting.txt').waitFor({ state: 'detached' });
  await row(alice, 'dropped.txt').dragTo(row(alice, 'Docs'));
  await row(alice, 'dropped.txt').waitFor({ state: 'detached' });
  await row(alice, 'Docs').locator('.name').click();
  await row(alice, 'greeting.txt').waitFor();
  await row(alice, 'dropped.txt').waitFor();
  await alice.click('.crumbs a[data-path=""]');
  await row(alice, 'Docs').waitFor();
});

await step('delete a folder to the trash, see who deleted it, restore it', async () => {
  await alice.click('#new-folder');
  await alice.fill('dialog input', 'Old');
  await alice.click('dialog button.primary');
  await row(alice, 'Old').waitFor();
  await row(alice, 'second.txt').dragTo(row(alice, 'Old'));
  await row(alice, 'second.txt').waitFor({ state: 'detached' });
  await rowAction(alice, 'Old', 'Delete');
  await alice.click('dialog button.danger');
  await row(alice, 'Old').waitFor({ state: 'detached' });
  await alice.click('nav.side a[data-view="trash"]');
  const item = alice.locator('.trash-item[data-path="Old"]');
  await item.waitFor();
  const text = await item.textContent();
  check(text.includes('1 item,') && text.includes('by alice') && text.includes('Web (Chrome'), `trash row: ${text}`);
  await item.locator('button', { hasText: 'Restore' }).click();
  await toastWith(alice, 'Restored Old');
  await alice.click('nav.side a[data-view="files"]');
  await row(alice, 'Old').locator('.name').click();
  await row(alice, 'second.txt').waitFor();
  await alice.click('.crumbs a[data-path=""]');
});

await step('version history: restore an older version', async () => {
  await alice.setInputFiles('#pick-files', [{ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('version one\n') }]);
  await row(alice, 'notes.txt').waitFor();
  await alice.click('.uploads button:has-text("Clear")').catch(() => {});
  await alice.setInputFiles('#pick-files', [{ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('version two!\n') }]);
  await waitDone(alice, 'notes.txt');
  await alice.waitForFunction(async () => (await fetch('/files/download?path=notes.txt').then((r) => r.text())) === 'version two!\n');
  await rowAction(alice, 'notes.txt', 'Version history');
  const revs = alice.locator('dialog .revision');
  await revs.nth(1).waitFor();
  check((await revs.count()) === 2, 'two versions');
  await revs.nth(1).locator('button', { hasText: 'Restore' }).click();
  await toastWith(alice, 'Restored the version');
  check(await fetchText(alice, '/files/download?path=notes.txt') === 'version one\n', 'the old content is back');
});

const bob = await newPage({ viewport: { width: 1280, height: 800 } });
await step('share a folder with another user, who sees it in their own browser', async () => {
  await login(bob, 'bob');
  await rowAction(alice, 'Docs', 'Share');
  await alice.fill('#share-with', 'bob');
  await alice.selectOption('#share-role', 'editor');
  await alice.click('#share-add');
  await alice.locator('dialog .member[data-user="bob"]').waitFor();
  await closeDialog(alice);
  // Bob is told without reloading, and the folder appears.
  await toastWith(bob, 'alice shared Docs with you');
  await row(bob, 'Docs').locator('.name').click();
  await row(bob, 'greeting.txt').waitFor();
  await bob.click('nav.side a[data-view="shared"]');
  await bob.locator('.share[data-path="Docs"]', { hasText: "alice's, you can edit" }).waitFor();
  await bob.click('nav.side a[data-view="files"]');
  // The owner makes bob a viewer, then an editor again.
  await rowAction(alice, 'Docs', 'Share');
  await alice.selectOption('select[aria-label="Role of bob"]', 'viewer');
  await toastWith(alice, 'bob is now viewer');
  const role = await alice.evaluate(() => fetch('/shares').then((r) => r.json())
    .then((l) => l.shares.find((s) => s.path === 'Docs').members.find((m) => m.user === 'bob').role));
  check(role === 'viewer', `bob's role: ${role}`);
  await alice.selectOption('select[aria-label="Role of bob"]', 'editor');
  await toastWith(alice, 'bob is now editor');
  await closeDialog(alice);
});

await step('links: made in the page, opened without a session, with and without a password', async () => {
  // A shared folder has none of its own.
  await rowAction(alice, 'Docs', 'Share');
  await alice.locator('dialog .links', { hasText: 'make links to what is in it' }).waitFor();
  check(!(await alice.locator('#link-create').count()), 'no link button for a shared folder');
  await closeDialog(alice);
  await rowAction(alice, 'Old', 'Share');
  await alice.click('#link-create');
  await alice.locator('dialog .link').first().waitFor();
  const open = await alice.locator('dialog .link .url').first().inputValue();
  await alice.fill('#link-password', 'sesame');
  await alice.click('#link-create');
  await alice.locator('dialog .link').nth(1).waitFor();
  const urls = await alice.locator('dialog .link .url').evaluateAll((els) => els.map((e) => e.value));
  const locked = urls.find((u) => u !== open);
  await closeDialog(alice);
  const stranger = await newPage();
  await stranger.goto(open);
  await stranger.locator('a', { hasText: 'second.txt' }).waitFor();
  check(!(await stranger.context().cookies()).some((c) => c.name === 'ferry_session'), 'no session in the fresh context');
  await stranger.goto(locked);
  await stranger.fill('input[type=password]', 'wrong');
  await stranger.click('button[type=submit], input[type=submit]');
  // The answer has come (the form again, saying so) before "nothing" is checked.
  await stranger.locator('text=That password is not right').waitFor();
  check(!(await stranger.locator('a', { hasText: 'second.txt' }).count()), 'a wrong password shows nothing');
  await stranger.fill('input[type=password]', 'sesame');
  await stranger.click('button[type=submit], input[type=submit]');
  await stranger.locator('a', { hasText: 'second.txt' }).waitFor();
  // Revoked in the Links view: the link no longer opens.
  await alice.click('nav.side a[data-view="links"]');
  await alice.locator('.link input.url').first().waitFor();
  const at = await alice.locator('.link input.url').evaluateAll((els, u) => els.findIndex((e) => e.value === u), open);
  check(at >= 0, 'the link is listed');
  await alice.locator('.link').nth(at).locator('button', { hasText: 'Revoke' }).click();
  await toastWith(alice, 'Link revoked');
  const gone = await stranger.goto(open);
  check(gone.status() === 404, `a revoked link answers 404 (got ${gone.status()})`);
  await alice.click('nav.side a[data-view="files"]');
  await stranger.context().close();
  pages.splice(pages.indexOf(stranger), 1);
});

await step('a change made by a daemon appears as a notification, without reloading', async () => {
  await alice.click('.crumbs a[data-path=""]');
  await host({ cmd: 'daemon_write', path: 'from-laptop.txt', text: 'written on the laptop\n' });
  await toastWith(alice, 'alice added from-laptop.txt');
  await row(alice, 'from-laptop.txt').waitFor();
  check(!(await alice.locator('#badge').isHidden()), 'the bell counts it');
  await alice.click('#bell');
  await alice.locator('#notes .event', { hasText: 'from-laptop.txt' }).first().waitFor();
  await alice.click('#bell');
  await alice.screenshot({ path: join(ARTIFACTS, 'desktop.png') });
});

await step('sizes over 10 GiB and over the quota are refused before sending', async () => {
  await alice.setInputFiles('#pick-files', join(FILES, 'huge.bin'));
  await toastWith(alice, 'larger than 10 GiB');
  const carol = await newPage();
  await login(carol, 'carol');
  await carol.setInputFiles('#pick-files', [{ name: 'two-mib.bin', mimeType: 'application/octet-stream',
    buffer: Buffer.alloc(2 << 20, 7) }]);
  await toastWith(carol, 'quota would be exceeded');
  check(!(await carol.locator('.job').count()), 'no upload is shown');
  const uploads = sentBy.get(carol).filter((c) => /^(POST|PUT) \/(files\/upload|blocks|commit)/.test(c));
  check(!uploads.length, `nothing was sent (the network saw ${uploads.join(', ')})`);
  await carol.context().close();
  pages.splice(pages.indexOf(carol), 1);
});

await step('phone width: upload and the row menu work with touch', async () => {
  const phone = await newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
    colorScheme: 'dark' });
  await login(phone, 'bob');
  const bg = await phone.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(bg === 'rgb(17, 24, 39)', `dark mode follows the system (background ${bg})`);
  await phone.setInputFiles('#pick-files', [{ name: 'from-phone.txt', mimeType: 'text/plain', buffer: Buffer.from('tap tap\n') }]);
  await waitDone(phone, 'from-phone.txt');
  await row(phone, 'from-phone.txt').waitFor();
  await row(phone, 'from-phone.txt').locator('.more').tap();
  await phone.locator('.menu button', { hasText: 'Rename' }).waitFor();
  await phone.screenshot({ path: join(ARTIFACTS, 'phone.png') });
  await phone.locator('.menu button', { hasText: 'Rename' }).tap();
  await phone.fill('dialog input', 'renamed-on-phone.txt');
  await phone.locator('dialog button.primary').tap();
  await row(phone, 'renamed-on-phone.txt').waitFor();
  // Leaving a folder shared with you, by touch.
  await row(phone, 'Docs').locator('.more').tap();
  await phone.locator('.menu button', { hasText: 'Leave shared folder' }).tap();
  await phone.locator('dialog button.danger', { hasText: 'Leave' }).tap();
  await row(phone, 'Docs').waitFor({ state: 'detached' });
  await row(alice, 'Docs').waitFor();
  await phone.locator('nav.side a[data-view="trash"]').tap();
  await phone.locator('h2', { hasText: 'Trash' }).waitFor();
  await phone.context().close();
  pages.splice(pages.indexOf(phone), 1);
});

await step('a folder of 10,000 entries: rendered, filtered and scrolled to the end', async () => {
  const made = await host({ cmd: 'many', count: 10000 });
  check(made.ok, 'the folder was made');
  const t0 = await alice.evaluate(() => {
    location.hash = '#/files/many';
    return performance.now();
  });
  await alice.locator('#count', { hasText: '10000 items' }).waitFor();
  await row(alice, 'entry-00001').waitFor();
  const t1 = await alice.evaluate(() => performance.now());
  const rows = await alice.locator('.row').count();
  check(rows < 200, `only the rows in view exist (${rows})`);
  await alice.locator('#list').evaluate((l) => { l.scrollTop = l.scrollHeight; });
  await row(alice, 'entry-10000').waitFor();
  // Sorted by name the other way: the last comes first.
  await alice.click('.sort[data-sort="name"]');
  await alice.locator('#list').evaluate((l) => { l.scrollTop = 0; });
  await row(alice, 'entry-10000').waitFor();
  const first = await alice.locator('.row').first().getAttribute('data-name');
  check(first === 'entry-10000', `first row sorted descending: ${first}`);
  await alice.click('.sort[data-sort="name"]');
  await alice.fill('#filter', 'entry-0999');
  await alice.locator('#count', { hasText: '10 of 10000 items' }).waitFor();
  await alice.fill('#filter', '');
  if (FIGURES) {
    const fresh = await newPage({ viewport: { width: 1280, height: 800 } });
    await fresh.context().addCookies(await alice.context().cookies());
    const n0 = Date.now();
    await fresh.goto('/#/files/many');
    await row(fresh, 'entry-00001').waitFor();
    const loaded = Date.now() - n0;
    console.log(`FIGURE 10,000-entry folder: shown ${Math.round(t1 - t0)} ms after opening it in the app; `
      + `${loaded} ms from loading the page at its URL to the first rows`);
    await fresh.context().close();
    pages.splice(pages.indexOf(fresh), 1);
  }
  await alice.click('.crumbs a[data-path=""]');
});

if (FIGURES) {
  await step('figure: page weight on first load', async () => {
    const page = await newPage();
    let bytes = 0;
    const seen = [];
    page.on('requestfinished', async (req) => {
      const sizes = await req.sizes();
      bytes += sizes.responseBodySize + sizes.responseHeadersSize;
      seen.push(`${new URL(req.url()).pathname} ${sizes.responseBodySize}`);
    });
    await login(page, 'alice');
    await page.waitForLoadState('networkidle').catch(() => {});
    console.log(`FIGURE page weight: ${bytes} bytes (${(bytes / 1024).toFixed(1)} KiB, uncompressed, headers included) `
      + `to log in and show the top folder: ${seen.join(', ')}`);
    await page.context().close();
    pages.splice(pages.indexOf(page), 1);
  });
}

await step('a 96 MiB upload resumes after the page is reloaded (the session is kept in the browser)', async () => {
  await alice.setInputFiles('#pick-files', join(FILES, 'mid.bin'));
  await alice.waitForFunction(() => {
    const p = document.querySelector('.job[data-path="mid.bin"] progress');
    return p && p.value > 24 * 1024 * 1024;
  });
  await alice.reload();
  await alice.waitForSelector('#list');
  await toastWith(alice, 'Unfinished uploads: mid.bin');
  await alice.setInputFiles('#pick-files', join(FILES, 'mid.bin'));
  await waitDone(alice, 'mid.bin', 120000);
  const from = Number(await alice.locator('.job[data-path="mid.bin"]').getAttribute('data-resumed-from'));
  check(from >= 16 * 1024 * 1024, `resumed from byte ${from}, not from the start`);
  check((await host({ cmd: 'same_file', path: 'mid.bin', local: 'mid.bin' })).same, 'the server has the same bytes');
});

await step('a 1 GiB upload survives a server restart half-way and resumes', async () => {
  await alice.setInputFiles('#pick-files', join(FILES, 'big.bin'));
  await alice.waitForFunction(() => {
    const p = document.querySelector('.job[data-path="big.bin"] progress');
    return p && p.value > 300 * 1024 * 1024;
  }, null, { timeout: 120000 });
  await host({ cmd: 'restart' });
  await waitDone(alice, 'big.bin', 300000);
  check((await host({ cmd: 'same_file', path: 'big.bin', local: 'big.bin' })).same, 'the server has the same bytes');
  await row(alice, 'big.bin').waitFor();
});

if (FIGURES) {
  await step('figure: 1 GiB upload throughput', async () => {
    // Bytes the server has not seen, picked to committed.
    const t0 = await alice.evaluate(() => performance.now());
    await alice.setInputFiles('#pick-files', join(FILES, 'fig.bin'));
    await alice.waitForSelector('.job[data-path="fig.bin"][data-state="done"]', { timeout: 300000 });
    const t1 = await alice.evaluate(() => performance.now());
    const secs = (t1 - t0) / 1000;
    console.log(`FIGURE 1 GiB browser upload: ${secs.toFixed(2)} s, ${((1 << 30) / 1e6 / secs).toFixed(0)} MB/s `
      + '(picked to committed: sent in 64 MiB PUTs, chunked, hashed, compressed, encrypted and committed by the server)');
  });
}

await step('every call the page made is in /openapi.json', async () => {
  const doc = await (await fetch(`${URL_}/openapi.json`)).json();
  const ops = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) =>
    ({ method: m.toUpperCase(), re: new RegExp(`^${path.replace(/\{[^}]+\}/g, '[^/]+')}$`) })));
  const missing = [...called].filter((c) => {
    const [method, path] = c.split(' ');
    return !ops.some((o) => o.method === method && o.re.test(path));
  });
  check(called.size > 10, `calls recorded: ${called.size}`);
  check(!missing.length, `not in /openapi.json: ${missing.join(', ')}`);
});

await browser.close();
if (failures.length) {
  console.log(`${failures.length} failed: ${failures.join('; ')}`);
  process.exit(1);
}
console.log('all browser steps passed');
process.exit(0);
