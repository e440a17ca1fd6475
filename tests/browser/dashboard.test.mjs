#!/usr/bin/env node
// The dashboard (GET /) in a real browser against the real batchd.
//
//   BATCHD_BIN=$PWD/build/batchd node tests/browser/dashboard.test.mjs
//   (make browser does this, after sh scripts/deps.sh browser)
//
// It starts build/batchd on a free port of 127.0.0.1 with a temporary data
// dir (--workers 1, models square, exp_sinh and chaos), drives Debian's
// /usr/bin/chromium through npm playwright-core (no browser is downloaded),
// and checks what a user would see:
//   - the page, its script and style come from batchd alone (no other
//     origin is ever asked), with no script error and no CSP violation;
//   - a job submitted through the form: its progress bar reaches 100 % and
//     its status becomes succeeded;
//   - bad input: the API's problem+json (title, detail, line or pointer) is
//     shown;
//   - a long job (chaos, 60 × 300 ms) cancelled with the button, the confirm
//     dialog accepted: the status becomes cancelled;
//   - polls of the jobs list send If-None-Match and get 304s;
//   - polls of the selected job send If-None-Match and get 304s (seen in the
//     browser's network events), and every API call carries the bearer token
//     typed into the token field;
//   - a hidden tab polls less;
//   - batchd stopped (SIGTERM by PID): the reconnecting banner shows;
//     batchd started again on the same port: the page recovers by itself.
// Screenshots at 375 px and 1280 px go to tests/browser/out/ (git-ignored).
//
// Every wait is bounded; the whole run has a watchdog. The last line is
// "N passed, N failed"; the exit status is 1 when anything failed. When
// Chromium or playwright-core is missing or cannot start, it says so loudly
// and fails: it never passes without a browser.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.join(HERE, 'out');
const CHROMIUM = process.env.BATCHD_CHROMIUM || '/usr/bin/chromium';
const BIN = process.env.BATCHD_BIN || path.resolve(HERE, '../../build/batchd');
const WATCHDOG_MS = 300_000;
const TOKEN = 'dashboard-test-token';

let passed = 0;
let failed = 0;
let svc = null;
let context = null;
let page = null;
const tmpDirs = [];

// ------------------------------------------------------------------ output

function loudFail(what, why) {
  const bar = '!'.repeat(76);
  console.log(bar);
  console.log(`!! BROWSER TEST CANNOT RUN: ${what}`);
  for (const line of String(why).split('\n').slice(0, 12)) console.log(`!!   ${line}`);
  console.log('!! The dashboard was NOT tested. This is a failure, not a skip.');
  console.log('!! Install: sh scripts/deps.sh browser (Debian chromium + npm playwright-core)');
  console.log(bar);
}

function finish() {
  /* nothing here is ever skipped: a test that cannot run fails */
  console.log(`browser: ${passed} passed, ${failed} failed, 0 skipped`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`${what}: timed out after ${ms / 1000} s`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

function slug(s) {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}

async function test(name, fn, timeoutMs = 60_000) {
  console.log(`# ${name}`);
  const t0 = Date.now();
  try {
    await withTimeout(Promise.resolve().then(fn), timeoutMs, name);
    passed++;
    console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return true;
  } catch (e) {
    failed++;
    console.log(`FAIL - ${name}: ${e && e.message ? e.message.split('\n').slice(0, 6).join('\n    ') : e}`);
    if (page) {
      const shot = path.join(OUT, `fail-${slug(name)}.png`);
      try {
        await page.screenshot({ path: shot, fullPage: true, timeout: 5000 });
        console.log(`  screenshot of the failure: ${path.relative(process.cwd(), shot)}`);
      } catch { /* no screenshot: the page is gone */ }
    }
    if (svc) svc.logTail(15);
    return false;
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// ------------------------------------------------------------------ batchd

class Service {
  constructor() {
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'batchd-browser-'));
    tmpDirs.push(this.tmp);
    this.dataDir = path.join(this.tmp, 'data');
    this.logFile = path.join(this.tmp, 'service.log');
    this.child = null;
    this.exitInfo = null;
    this.port = 0;
    this.starts = 0;
  }

  // Starts batchd (port 0 = any free port), waits (bounded) for its port
  // file and GET /readyz == 200.
  async start(port = 0) {
    this.starts++;
    const portFile = path.join(this.tmp, `port.${this.starts}`);
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('BATCHD_')) delete env[k];
    const args = ['--listen', `127.0.0.1:${port}`, '--port-file', portFile, '--data-dir', this.dataDir,
      '--workers', '1', '--model', 'square', '--model', 'exp_sinh', '--model', 'chaos'];
    const fd = fs.openSync(this.logFile, 'a');
    this.exitInfo = null;
    this.child = spawn(BIN, args, { stdio: ['ignore', fd, fd], env });
    fs.closeSync(fd);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => { this.exitInfo = { code, signal }; resolve(this.exitInfo); });
      this.child.on('error', (e) => { this.exitInfo = { code: -1, signal: null, error: e }; resolve(this.exitInfo); });
    });
    const deadline = Date.now() + 20_000;
    this.port = 0;
    for (let i = 0; i < 1000 && Date.now() < deadline && !this.port; i++) {
      if (this.exitInfo) throw new Error(`batchd exited at start: ${JSON.stringify(this.exitInfo)}`);
      try {
        const t = fs.readFileSync(portFile, 'utf8').trim();
        if (/^\d+$/.test(t)) this.port = Number(t);
      } catch { /* not written yet */ }
      if (!this.port) await sleep(50);
    }
    check(this.port > 0, 'batchd wrote no port file within 20 s');
    for (let i = 0; i < 400 && Date.now() < deadline; i++) {
      if (this.exitInfo) throw new Error(`batchd exited at start: ${JSON.stringify(this.exitInfo)}`);
      try {
        const r = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2000) });
        if (r.status === 200) return;
      } catch { /* not yet */ }
      await sleep(100);
    }
    throw new Error('batchd was not ready (GET /readyz) within 20 s');
  }

  get url() { return `http://127.0.0.1:${this.port}`; }
  get pid() { return this.child && !this.exitInfo ? this.child.pid : 0; }

  // SIGTERM to batchd's PID (the supervisor, our child), bounded wait;
  // SIGKILL only as a last resort, which counts as a failure.
  async stop(timeoutMs = 15_000) {
    if (!this.child || this.exitInfo) return this.exitInfo;
    process.kill(this.child.pid, 'SIGTERM');
    const r = await Promise.race([this.exited, sleep(timeoutMs).then(() => null)]);
    if (!r) {
      process.kill(this.child.pid, 'SIGKILL');
      await Promise.race([this.exited, sleep(5000)]);
      throw new Error(`batchd (pid ${this.child.pid}) did not stop within ${timeoutMs / 1000} s of SIGTERM; killed`);
    }
    return r;
  }

  logTail(n) {
    try {
      const lines = fs.readFileSync(this.logFile, 'utf8').trimEnd().split('\n');
      console.log(`  --- last ${Math.min(n, lines.length)} lines of batchd's log ---`);
      for (const l of lines.slice(-n)) console.log(`  | ${l.slice(0, 300)}`);
    } catch { /* no log */ }
  }
}

// ------------------------------------------------------------------ cleanup

let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  if (context) {
    try { await withTimeout(context.close(), 10_000, 'closing Chromium'); } catch (e) { console.log(`note: ${e.message}`); }
  }
  if (svc && svc.pid) {
    try { await svc.stop(); } catch (e) { console.log(`note: ${e.message}`); }
  }
  if (!process.env.BATCHD_KEEP_TMP) {
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  }
}

// A last resort if the process goes away without cleanup(): only our own
// batchd, by PID.
process.on('exit', () => {
  if (svc && svc.pid) try { process.kill(svc.pid, 'SIGTERM'); } catch { /* gone */ }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    console.log(`interrupted by ${sig}`);
    failed++;
    await cleanup();
    process.exit(finish() || 1);
  });
}
const watchdog = setTimeout(async () => {
  console.log(`FAIL - watchdog: the browser test ran for over ${WATCHDOG_MS / 1000} s`);
  failed++;
  await cleanup();
  process.exit(1);
}, WATCHDOG_MS);

// ------------------------------------------------------------------ page helpers

// Waits until document.querySelector(sel).textContent.trim() matches.
async function waitText(sel, want, timeout = 15_000) {
  try {
    await page.waitForFunction(([s, w]) => {
      const e = document.querySelector(s);
      if (!e) return false;
      const t = e.textContent.trim();
      return w.startsWith('/') && w.endsWith('/') ? new RegExp(w.slice(1, -1)).test(t) : t === w;
    }, [sel, want], { timeout, polling: 100 });
  } catch (e) {
    const got = await page.evaluate((s) => document.querySelector(s)?.textContent.trim(), sel).catch(() => '?');
    throw new Error(`${sel}: waited ${timeout / 1000} s for ${JSON.stringify(want)}, it shows ${JSON.stringify(got)}`);
  }
}

async function waitVisible(sel, visible, timeout = 15_000) {
  try {
    await page.waitForFunction(([s, v]) => {
      const e = document.querySelector(s);
      return !!e && (!e.hidden && e.getClientRects().length > 0) === v;
    }, [sel, visible], { timeout, polling: 100 });
  } catch {
    throw new Error(`${sel} did not become ${visible ? 'visible' : 'hidden'} within ${timeout / 1000} s`);
  }
}

// Submits through the form; returns {status, body} of the POST.
async function submitForm(model, items, format) {
  await page.selectOption('#model', model);
  await page.fill('#items', items);
  await page.check(`input[name="format"][value="${format}"]`);
  const [resp] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/jobs' && r.request().method() === 'POST', { timeout: 30_000 }),
    page.click('#submit-btn'),
  ]);
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  return { status: resp.status(), body };
}

// Watches the detail's progress bar until the job is `status` with the bar
// at `pct`; returns the distinct progress values seen on the way.
async function watchProgress(id, status, pct, timeoutMs) {
  const seen = [];
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 2000 && Date.now() < deadline; i++) {
    const s = await page.evaluate(() => ({
      id: document.querySelector('#d-id').textContent,
      status: document.querySelector('#d-status').textContent,
      now: document.querySelector('#d-bar').getAttribute('aria-valuenow'),
    }));
    if (s.id === id) {
      if (seen[seen.length - 1] !== s.now) seen.push(s.now);
      if (s.status === status && s.now === String(pct)) return seen;
    }
    await sleep(100);
  }
  throw new Error(`job ${id} did not reach ${status} at ${pct} % within ${timeoutMs / 1000} s (progress seen: ${seen.join(', ')})`);
}

// ------------------------------------------------------------------ main

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  // failure pictures of an earlier run would mislead
  for (const f of fs.readdirSync(OUT)) if (/^fail-.*\.png$/.test(f)) fs.rmSync(path.join(OUT, f));

  // The browser first: without it, nothing here means anything.
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    loudFail('npm playwright-core is not installed in tests/browser', e.message);
    failed++;
    return;
  }
  if (!fs.existsSync(CHROMIUM)) {
    loudFail(`${CHROMIUM} does not exist`, 'Debian package chromium is not installed');
    failed++;
    return;
  }
  if (!fs.existsSync(BIN)) {
    loudFail(`batchd binary ${BIN} does not exist`, 'run make first (or set BATCHD_BIN)');
    failed++;
    return;
  }

  svc = new Service();
  if (!(await test('start batchd', () => svc.start(), 30_000))) return;

  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'batchd-chromium-'));
  tmpDirs.push(userDir);
  try {
    context = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
      timeout: 60_000,
    });
  } catch (e) {
    loudFail(`Chromium (${CHROMIUM}) could not be launched`, e.message);
    failed++;
    return;
  }
  passed++;
  console.log('ok - launch Chromium');
  page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(15_000);

  // Everything the browser asks for and gets, and every error it reports.
  const requests = [];   // {url, path, method, headers, status, t}
  const outside = [];
  const pageErrors = [];
  const consoleErrors = [];
  context.on('request', (req) => {
    const u = new URL(req.url());
    if (u.protocol === 'data:') return;
    if (u.hostname !== '127.0.0.1' || Number(u.port) !== svc.port) outside.push(req.url());
  });
  context.on('response', (resp) => {
    const req = resp.request();
    const u = new URL(resp.url());
    requests.push({ path: u.pathname, query: u.search, method: req.method(), headers: req.headers(), status: resp.status(), t: Date.now() });
  });
  const failedReqs = []; // {path, t}: requests that got no answer
  context.on('requestfailed', (req) => {
    const u = new URL(req.url());
    failedReqs.push({ path: u.pathname, t: Date.now() });
  });
  page.on('pageerror', (e) => pageErrors.push(String(e && e.message ? e.message : e)));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });

  const baseUrl = svc.url;
  const isApi = (p) => p.startsWith('/v1/') || p === '/metrics' || p === '/healthz';
  let tokenSince = 0;
  let succeededId = null;

  await test('the dashboard loads from batchd alone', async () => {
    const resp = await page.goto(`${baseUrl}/`, { waitUntil: 'load', timeout: 20_000 });
    check(resp && resp.status() === 200, `GET / answered ${resp && resp.status()}`);
    check((await page.title()) === 'batchd dashboard', `title ${await page.title()}`);
    await page.waitForFunction(() => document.querySelectorAll('#model option').length === 3, null, { timeout: 15_000 });
    const models = await page.$$eval('#model option', (os) => os.map((o) => o.value).sort());
    check(JSON.stringify(models) === JSON.stringify(['chaos', 'exp_sinh', 'square']), `models ${models}`);
    await page.waitForFunction(() => document.querySelectorAll('#workers-body .model-card tbody tr').length === 3, null, { timeout: 15_000 });
    const pids = await page.$$eval('#workers-body .model-card tbody tr td:nth-child(3)', (tds) => tds.map((t) => t.textContent));
    check(pids.every((p) => /^\d+$/.test(p)), `worker pids ${pids}`);
    await waitText('#conn-text', '/^Live/');
    const assets = requests.filter((r) => r.path.startsWith('/ui/')).map((r) => `${r.path} ${r.status}`);
    check(assets.includes('/ui/app.js 200') && assets.includes('/ui/app.css 200'), `assets ${assets}`);
    check(outside.length === 0, `requests to other origins: ${outside.join(', ')}`);
    // the token field: kept in sessionStorage, sent from now on
    await page.fill('#token', TOKEN);
    await page.click('#auth-form button[type="submit"]');
    await waitText('#token-state', 'Token set for this tab.');
    const stored = await page.evaluate(() => sessionStorage.getItem('batchd.token'));
    check(stored === TOKEN, `sessionStorage holds ${stored}`);
    tokenSince = Date.now();
  });

  await test('submit a job: progress reaches 100 %, status succeeded', async () => {
    const items = JSON.stringify(Array.from({ length: 400 }, (_, i) => ({ n: 500000 + i })));
    const r = await submitForm('exp_sinh', items, 'auto');
    check(r.status === 202, `POST /v1/jobs answered ${r.status}: ${JSON.stringify(r.body)}`);
    const id = r.body.id;
    await waitText('#d-id', id);
    const seen = await watchProgress(id, 'succeeded', 100, 60_000);
    console.log(`  progress seen: ${seen.join(' → ')} %`);
    await waitText(`#jobs-body tr[data-id="${id}"] .badge`, 'succeeded');
    const rowPct = await page.getAttribute(`#jobs-body tr[data-id="${id}"] [role="progressbar"]`, 'aria-valuenow');
    check(rowPct === '100', `the list's bar shows ${rowPct}`);
    await waitText('#d-done', '400');
    await page.waitForFunction(() => document.querySelectorAll('#d-results li').length > 0, null, { timeout: 10_000 });
    const first = await page.textContent('#d-results li');
    check(/^#0\s*→/.test(first.trim()), `first result shows ${first}`);
    succeededId = id;
  });

  await test('bad input: the API problem is shown (title, detail, line, pointer)', async () => {
    // a JSON array cut short: 400 invalid-json with line and column
    let r = await submitForm('square', '[1, 2,\n 3, ', 'json');
    check(r.status === 400 && r.body && r.body.type === 'urn:batchd:problem:invalid-json', `got ${r.status} ${JSON.stringify(r.body)}`);
    await waitVisible('#problem', true);
    await waitText('#problem-detail', r.body.detail);
    const title = (await page.textContent('#problem-title')).trim();
    check(title === `${r.body.title} (400)`, `title shows ${title}`);
    const where = (await page.textContent('#problem-where')).replace(/\s+/g, ' ');
    check(/Line\s*\d/.test(where), `no line shown: ${where}`);
    // NDJSON with a bad second line: the line is the user's own
    r = await submitForm('square', '1\n{oops}\n3', 'ndjson');
    check(r.status === 400 && r.body.line === 2, `got ${r.status} ${JSON.stringify(r.body)}`);
    await waitText('#problem-detail', r.body.detail);
    const where2 = (await page.textContent('#problem-where')).replace(/\s+/g, ' ');
    check(/Line\s*2\b/.test(where2), `line 2 not shown: ${where2}`);
    check((await page.textContent('#problem-excerpt')).includes('{oops}'), 'the offending line is not quoted');
    // well-formed, wrong shape: 422 with a pointer
    r = await submitForm('square', '{"a": 1}', 'json');
    check(r.status === 422 && typeof r.body.pointer === 'string', `got ${r.status} ${JSON.stringify(r.body)}`);
    await waitText('#problem-detail', r.body.detail);
    const where3 = (await page.textContent('#problem-where')).replace(/\s+/g, ' ');
    check(where3.includes(r.body.pointer), `pointer ${r.body.pointer} not shown: ${where3}`);
    // a good submission clears it
    r = await submitForm('square', '[5]', 'json');
    check(r.status === 202, `good job answered ${r.status}`);
    await waitVisible('#problem', false);
  });

  await test('cancel a long job with the button (confirm accepted)', async () => {
    const lines = Array.from({ length: 60 }, () => '{"sleep_ms": 300, "value": 1}').join('\n');
    const r = await submitForm('chaos', lines, 'auto');
    check(r.status === 202, `POST answered ${r.status}: ${JSON.stringify(r.body)}`);
    const id = r.body.id;
    await waitText('#d-id', id);
    await waitText('#d-status', 'running', 20_000);
    await page.waitForFunction(() => !document.querySelector('#d-cancel').disabled, null, { timeout: 5000 });
    let dialog = null;
    page.once('dialog', async (d) => { dialog = { type: d.type(), message: d.message() }; await d.accept(); });
    const [del] = await Promise.all([
      page.waitForResponse((x) => x.request().method() === 'DELETE' && new URL(x.url()).pathname === `/v1/jobs/${id}`, { timeout: 15_000 }),
      page.click('#d-cancel'),
    ]);
    check(dialog && dialog.type === 'confirm' && dialog.message.includes(id), `dialog ${JSON.stringify(dialog)}`);
    check(del.status() === 200, `DELETE answered ${del.status()}`);
    await waitText('#d-status', 'cancelled', 20_000);
    await waitText(`#jobs-body tr[data-id="${id}"] .badge`, 'cancelled');
    const cancelled = Number((await page.textContent('#d-cancelled')).replace(/,/g, ''));
    check(cancelled > 0 && cancelled < 60, `cancelled count ${cancelled}`);
    check(await page.isDisabled('#d-cancel'), 'the Cancel button is still enabled');
  });

  await test('polls of the selected job send If-None-Match and get 304', async () => {
    check(succeededId, 'no succeeded job from the earlier test');
    await page.click(`#jobs-body tr[data-id="${succeededId}"] button`);
    await waitText('#d-id', succeededId);
    const since = Date.now();
    const jobPath = `/v1/jobs/${succeededId}`;
    const deadline = since + 15_000;
    let polls = [];
    for (let i = 0; i < 200 && Date.now() < deadline; i++) {
      polls = requests.filter((x) => x.t >= since && x.path === jobPath && x.method === 'GET');
      if (polls.filter((x) => x.status === 304).length >= 3) break;
      await sleep(100);
    }
    const n304 = polls.filter((x) => x.status === 304);
    check(n304.length >= 3, `only ${n304.length} 304s in ${polls.length} polls of ${jobPath}: ${polls.map((x) => x.status)}`);
    check(n304.every((x) => x.headers['if-none-match']), 'a 304 to a request without If-None-Match');
    console.log(`  ${polls.length} polls of the job, ${n304.length} answered 304`);
  });

  await test('polls of the jobs list send If-None-Match and get 304', async () => {
    /* every job on the page has ended: the list stays the same */
    const since = Date.now();
    const deadline = since + 15_000;
    let polls = [];
    for (let i = 0; i < 200 && Date.now() < deadline; i++) {
      polls = requests.filter((x) => x.t >= since && x.path === '/v1/jobs' && x.method === 'GET');
      if (polls.filter((x) => x.status === 304).length >= 3) break;
      await sleep(100);
    }
    const n304 = polls.filter((x) => x.status === 304);
    check(n304.length >= 3, `only ${n304.length} 304s in ${polls.length} polls of /v1/jobs: ${polls.map((x) => x.status)}`);
    check(n304.every((x) => x.headers['if-none-match']), 'a 304 to a list request without If-None-Match');
    check(await page.$$eval('#jobs-body tr[data-id]', (rows) => rows.length) > 0, 'the list is empty after 304s');
    console.log(`  ${polls.length} polls of the list, ${n304.length} answered 304`);
  });

  await test('every API call carries Authorization: Bearer <token>', async () => {
    const api = requests.filter((x) => x.t > tokenSince + 50 && isApi(x.path));
    check(api.length > 10, `only ${api.length} API calls recorded`);
    const without = api.filter((x) => x.headers.authorization !== `Bearer ${TOKEN}`);
    check(without.length === 0, `${without.length} calls without the token, e.g. ${without[0] && without[0].method + ' ' + without[0].path}`);
    const paths = new Set(api.map((x) => x.path.replace(/[a-z2-7]{26}/, '{id}')));
    for (const p of ['/v1/jobs', '/v1/jobs/{id}', '/v1/workers', '/v1/models', '/metrics'])
      check(paths.has(p), `no call to ${p} seen`);
  });

  await test('a hidden tab polls less, a visible one at once', async () => {
    const lists = () => requests.filter((x) => x.path === '/v1/jobs' && x.method === 'GET');
    await page.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await sleep(1500); // a poll already under way may still finish
    const before = lists().length;
    await sleep(4000);
    const hiddenPolls = lists().length - before;
    check(hiddenPolls <= 1, `${hiddenPolls} list polls in 4 s while hidden`);
    const t = Date.now();
    await page.evaluate(() => {
      delete document.hidden;
      delete document.visibilityState;
      document.dispatchEvent(new Event('visibilitychange'));
    });
    for (let i = 0; i < 50 && !lists().some((x) => x.t > t); i++) await sleep(100);
    check(lists().some((x) => x.t > t), 'no poll within 5 s of becoming visible');
    await sleep(3000);
    const visiblePolls = lists().filter((x) => x.t > t).length;
    check(visiblePolls >= 2, `${visiblePolls} list polls in 3 s while visible`);
    console.log(`  hidden: ${hiddenPolls} polls in 4 s; visible: ${visiblePolls} in 3 s`);
  });

  await test('screenshots at 1280 px and 375 px', async () => {
    // for the picture: a job running (chaos, 40 x 250 ms), and a finished
    // job with outputs and errors, selected
    let r = await submitForm('chaos', Array.from({ length: 40 }, (_, i) => `{"sleep_ms": 250, "value": ${i}}`).join('\n'), 'auto');
    check(r.status === 202, `POST answered ${r.status}`);
    r = await submitForm('square', '[1, 2, "three", 4, null, 6, 7.5, {"x": 1}, 9, 10]', 'json');
    check(r.status === 202, `POST answered ${r.status}`);
    await waitText('#d-status', 'succeeded', 30_000);
    await page.waitForFunction(() => document.querySelectorAll('#d-errors li').length === 3, null, { timeout: 10_000 });
    const err = await page.textContent('#d-errors li');
    check(/#2\s+square expects a number/.test(err.trim()), `first error shows ${err}`);
    await page.selectOption('#model', 'exp_sinh');
    await page.fill('#items', '{"n": 100000}\n{"n": 200000}\n{"n": 300000}');
    await page.check('input[name="format"][value="auto"]');
    await sleep(2500); // the chaos job under way, a few chart points
    for (const width of [1280, 375]) {
      await page.setViewportSize({ width, height: width === 375 ? 812 : 900 });
      await sleep(700);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      check(overflow <= 0, `at ${width} px the page is ${overflow} px wider than the window`);
      const file = path.join(OUT, `dashboard-${width}.png`);
      await page.screenshot({ path: file, fullPage: true });
      console.log(`  ${path.relative(process.cwd(), file)}`);
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await test('batchd stops: reconnecting banner; it starts again: the page recovers', async () => {
    await page.evaluate(() => { window.__noReload = 'still here'; });
    const port = svc.port;
    const oldPids = await page.$$eval('#workers-body tbody tr td:nth-child(3)', (t) => t.map((x) => x.textContent));
    const st = await svc.stop();
    check(st && st.code === 0, `batchd exited with ${JSON.stringify(st)}`);
    await waitVisible('#banner', true, 15_000);
    check((await page.textContent('#banner')).includes('Reconnecting'), 'the banner does not say Reconnecting');
    await waitText('#conn-text', 'Reconnecting…');
    await page.setViewportSize({ width: 375, height: 812 });
    await page.screenshot({ path: path.join(OUT, 'dashboard-reconnecting-375.png') });
    await page.setViewportSize({ width: 1280, height: 900 });
    await sleep(3500); // a few back-off rounds
    await svc.start(port);
    check(svc.port === port, `batchd came back on ${svc.port}, not ${port}`);
    await waitVisible('#banner', false, 20_000);
    await waitText('#conn-text', '/^Live/', 10_000);
    check((await page.evaluate(() => window.__noReload)) === 'still here', 'the page was reloaded');
    // the new batchd's workers are shown, and a job runs end to end again
    await page.waitForFunction((old) => {
      const p = Array.from(document.querySelectorAll('#workers-body tbody tr td:nth-child(3)')).map((t) => t.textContent);
      return p.length === 3 && p.every((x) => /^\d+$/.test(x) && !old.includes(x));
    }, oldPids, { timeout: 15_000 });
    const r = await submitForm('square', '[3, 4]', 'json');
    check(r.status === 202, `POST after the restart answered ${r.status}`);
    await watchProgress(r.body.id, 'succeeded', 100, 30_000);
    // the back-off: the probes that found batchd down came further and further apart
    const probes = failedReqs.filter((x) => x.path === '/healthz').map((x) => x.t);
    const gaps = probes.slice(1).map((t, i) => t - probes[i]);
    console.log(`  ${probes.length} failed /healthz probes while down, gaps ${gaps.map((g) => (g / 1000).toFixed(1)).join(', ')} s`);
    check(probes.length >= 2, `only ${probes.length} probes while batchd was down`);
    check(gaps.every((g, i) => i === 0 || g >= gaps[i - 1] * 1.3), 'the probes did not back off');
  }, 90_000);

  await test('no script error and no Content-Security-Policy violation', async () => {
    check(pageErrors.length === 0, `uncaught errors: ${pageErrors.slice(0, 3).join(' | ')}`);
    const csp = consoleErrors.filter((m) => /Content Security Policy/i.test(m));
    check(csp.length === 0, `CSP violations: ${csp.slice(0, 3).join(' | ')}`);
    // what remains are the browser's own network notes (4xx answers, batchd down)
    const other = consoleErrors.filter((m) => !/Failed to load resource|net::ERR_/.test(m));
    check(other.length === 0, `console errors: ${other.slice(0, 3).join(' | ')}`);
    check(outside.length === 0, `requests to other origins: ${outside.join(', ')}`);
  });

  await test('stop batchd (SIGTERM, exit 0)', async () => {
    const st = await svc.stop();
    check(st && st.code === 0, `batchd exited with ${JSON.stringify(st)}`);
  }, 30_000);
}

let code = 1;
try {
  await main();
} catch (e) {
  failed++;
  console.log(`FAIL - unexpected error: ${e && e.stack ? e.stack : e}`);
} finally {
  await cleanup();
  clearTimeout(watchdog);
  code = finish();
}
process.exit(code);
