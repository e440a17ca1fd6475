/*
 * batchd dashboard: plain JavaScript, no framework, no network but batchd.
 *
 * One polling loop (tick) runs at a time, never overlapping itself:
 *   - every tick: the jobs list and the selected job (GET /v1/jobs?... and
 *     GET /v1/jobs/{id}, each with If-None-Match: 304 while nothing
 *     changed) and /metrics (the summary's running jobs, queued items and
 *     items/s, and the throughput chart, drawn by chart.js);
 *   - every WORKERS_EVERY ticks: /v1/workers (the summary's busy workers and
 *     the worker tiles) and /v1/models.
 * What is happening comes first on the page: the summary, then the jobs
 * list; the submit form is a dialog opened by "New job" (closed again when
 * batchd accepted the job, which is then the list's first row, selected).
 * The chart's window follows what happened (chart.js, autoWindow) unless
 * the user picks 1 min, 5 min or 1 h.
 * Ticks come every POLL_MS while the tab is visible and every HIDDEN_POLL_MS
 * while it is hidden (visibilitychange). When batchd cannot be reached, a
 * banner says so and the loop probes /healthz with exponential back-off
 * (BACKOFF_FIRST_MS doubling to BACKOFF_MAX_MS); the first answer hides the
 * banner and the page carries on without a reload.
 *
 * Every API call sends `Authorization: Bearer <token>` when a token is set
 * (kept in sessionStorage: this tab only). The DOM is updated in place
 * (rows keyed by id, text set only when it changed) so that keyboard focus
 * survives the polls; everything that came from the API is inserted as text,
 * never as HTML.
 */
'use strict';

(function () {
  const POLL_MS = 1000;
  const HIDDEN_POLL_MS = 10000;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 8000;
  const REQUEST_TIMEOUT_MS = 8000;
  const SUBMIT_TIMEOUT_MS = 300000;
  const WORKERS_EVERY = 2;
  const PAGE_SIZE = 20;
  const RESULTS_PAGE = 500;
  const RESULTS_SHOWN = 10;
  const RESULTS_REFRESH_MS = 2000;
  /* rates are kept for the longest chart window, 1 h */
  const RATES_KEEP_MS = 3600 * 1000 + 10000;
  const Chart = window.BatchdChart;
  const TOKEN_KEY = 'batchd.token';
  const ANNOUNCE_MAX = 3;

  const $ = (id) => document.getElementById(id);

  /* ------------------------------------------------------------ helpers */

  /* Builds an element: el('td', {class: 'x', 'data-label': 'ETA'}, child...). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function setText(e, text) {
    const t = text === null || text === undefined ? '' : String(text);
    if (e.textContent !== t) e.textContent = t;
  }

  function setAttr(e, name, value) {
    const v = String(value);
    if (e.getAttribute(name) !== v) e.setAttribute(name, v);
  }

  function shortId(id) { return id.slice(0, 8) + '…'; }

  const nf = new Intl.NumberFormat('en-US');
  function fmtInt(n) { return n === null || n === undefined ? '–' : nf.format(n); }

  const fmtRate = Chart.fmtRate;

  function fmtDuration(s) {
    if (s === null || s === undefined || !isFinite(s)) return '–';
    if (s < 0) s = 0;
    if (s < 1) return Math.round(s * 1000) + ' ms';
    if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + Math.round(s - m * 60) + ' s';
    const h = Math.floor(m / 60);
    if (h < 48) return h + ' h ' + (m - h * 60) + ' min';
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
  }

  function fmtAge(s) {
    if (!isFinite(s)) return '–';
    if (s < 0) s = 0;
    if (s < 60) return Math.floor(s) + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 172800) return Math.floor(s / 3600) + ' h';
    return Math.floor(s / 86400) + ' d';
  }

  function fmtBytes(b) {
    if (b === null || b === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return (i === 0 ? b : b.toFixed(b < 10 ? 1 : 0)) + ' ' + units[i];
  }

  function fmtTime(ts) {
    if (!ts) return '–';
    const d = new Date(ts);
    if (isNaN(d)) return ts;
    return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }

  function secondsSince(ts, now) {
    const t = Date.parse(ts);
    return isNaN(t) ? NaN : (now - t) / 1000;
  }

  function jsonPreview(v, max) {
    let s;
    try { s = JSON.stringify(v); } catch (e) { s = String(v); }
    if (s === undefined) s = 'null';
    return s.length > max ? s.slice(0, max - 1) + '…' : s;
  }

  /* Tells screen readers about a change, politely (one region, atomic). */
  let announceTimer = null;
  function announce(text) {
    const a = $('announcer');
    a.textContent = '';
    clearTimeout(announceTimer);
    /* a fresh text node after a tick is announced even if it repeats */
    announceTimer = setTimeout(() => { a.textContent = text; }, 50);
  }

  /* ------------------------------------------------------------ token */

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  function showTokenState() {
    setText($('token-state'), token() ? 'Token set for this tab.' : 'No token: requests are sent without one.');
  }

  /* ------------------------------------------------------------ API */

  class Unreachable extends Error {}

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem && problem.detail ? problem.detail : 'HTTP ' + status);
      this.status = status;
      this.problem = problem;
    }
  }

  /*
   * One call to batchd. Resolves with the Response (any status); rejects
   * with Unreachable when no answer came (refused, reset, timed out) or the
   * answer is a gateway's 502/504.
   */
  async function api(path, opts) {
    const o = opts || {};
    const headers = new Headers(o.headers || {});
    const t = token();
    if (t) headers.set('Authorization', 'Bearer ' + t);
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), o.timeoutMs || REQUEST_TIMEOUT_MS);
    let res;
    try {
      res = await fetch(path, {
        method: o.method || 'GET',
        headers,
        body: o.body,
        /* conditional requests are ours to make: no HTTP cache in between */
        cache: 'no-store',
        credentials: 'same-origin',
        signal: ctl.signal,
      });
    } catch (e) {
      /* fetch says only "Failed to fetch" (TypeError) for refused or reset */
      throw new Unreachable(e && e.name === 'AbortError' ? 'no answer within ' + (o.timeoutMs || REQUEST_TIMEOUT_MS) / 1000 + ' s'
        : e instanceof TypeError ? 'no connection' : String(e && e.message ? e.message : e));
    } finally {
      clearTimeout(timer);
    }
    if (res.status === 502 || res.status === 504) throw new Unreachable('gateway answered ' + res.status);
    return res;
  }

  /* The problem+json of a failed response, or a stand-in built from its text. */
  async function problemOf(res) {
    let text = '';
    try { text = await res.text(); } catch (e) { /* nothing more to say */ }
    try {
      const p = JSON.parse(text);
      if (p && typeof p === 'object') return p;
    } catch (e) { /* not JSON */ }
    return { title: res.statusText || 'Error', status: res.status, detail: text.slice(0, 500) || 'HTTP ' + res.status };
  }

  async function getJson(path) {
    const res = await api(path);
    if (!res.ok) throw new ApiError(res.status, await problemOf(res));
    return res.json();
  }

  /* ------------------------------------------------------------ state */

  const state = {
    online: null,          /* null until the first answer */
    failures: 0,
    ticks: 0,
    timer: null,
    busy: false,
    again: false,
    models: [],
    modelsKey: '',
    filter: '',
    after: null,           /* the page's `after`, null on the first page */
    afterStack: [],        /* `after` of the pages before, for "Newer" */
    nextAfter: null,
    statuses: new Map(),   /* job id -> status last seen, for announcements */
    listSeen: false,
    sel: null,             /* the selected job: {id, job, etag, gone, results...} */
    listCache: null,       /* the last list: {key (its query), etag, list}, for 304s */
    metrics: null,         /* {t, total} of the last /metrics poll */
    rates: [],             /* {t, v}: items/s between polls; v null = gap */
    chartWin: 'auto',      /* 'auto' or the window in seconds the user chose */
    active: false,         /* a job is running or queued (from /metrics) */
  };

  /* ------------------------------------------------------------ connection */

  function setConn(kind, text) {
    const c = $('conn');
    const cls = 'conn conn-' + kind;
    if (c.className !== cls) c.className = cls;
    setText($('conn-text'), text);
  }

  function wentDown(why, retryMs) {
    const first = state.online !== false;
    state.online = false;
    setConn('down', 'Reconnecting…');
    setText($('banner-detail'), 'batchd is not answering (' + why + '). Attempt ' + state.failures + '; next try in ' + fmtDuration(retryMs / 1000) + '.');
    if (first) {
      $('banner').hidden = false;
      announce('Lost the connection to batchd; reconnecting.');
    }
  }

  function cameBack() {
    const wasDown = state.online === false;
    state.online = true;
    state.failures = 0;
    if (wasDown) {
      $('banner').hidden = true;
      announce('Reconnected to batchd.');
      /* counters may have restarted with batchd: no rate across the gap */
      state.metrics = null;
      state.rates.push({ t: performance.now(), v: null });
    }
  }

  /* ------------------------------------------------------------ the loop */

  function pollDelay() { return document.hidden ? HIDDEN_POLL_MS : POLL_MS; }

  function schedule(ms) {
    clearTimeout(state.timer);
    state.timer = setTimeout(tick, ms);
  }

  async function tick() {
    if (state.busy) { state.again = true; return; }
    state.busy = true;
    clearTimeout(state.timer);
    let delay = pollDelay();
    try {
      if (state.online === false) {
        const res = await api('/healthz', { timeoutMs: 4000 });
        if (!res.ok) throw new Unreachable('healthz answered ' + res.status);
      }
      const wasDown = state.online === false;
      cameBack();
      const everyN = state.ticks % WORKERS_EVERY === 0;
      if (wasDown || state.models.length === 0 || everyN) await pollModels();
      await pollJobs();
      await pollSelected();
      await pollMetrics();
      if (wasDown || everyN) await pollWorkers();
      state.ticks++;
      setConn('live', 'Live · updated ' + new Date().toLocaleTimeString([], { hour12: false }));
      showTokenState();
    } catch (e) {
      if (e instanceof Unreachable) {
        state.failures++;
        delay = Math.min(BACKOFF_FIRST_MS * Math.pow(2, state.failures - 1), BACKOFF_MAX_MS);
        wentDown(e.message, delay);
      } else if (e instanceof ApiError) {
        const denied = e.status === 401 || e.status === 403;
        setConn('error', 'batchd answered ' + e.status + ': ' + e.message + (denied ? ' Check the API token.' : ''));
        if (denied) setText($('token-state'), token() ? 'batchd refused this token.' : 'batchd wants a token: enter it and Save.');
      } else {
        setConn('error', 'Dashboard error: ' + (e && e.message ? e.message : e));
        console.error(e);
      }
    } finally {
      state.busy = false;
    }
    if (state.again) { state.again = false; delay = 0; }
    schedule(delay);
  }

  /* Runs a tick now (after the current one, if one is running). */
  function pollNow() {
    if (state.busy) state.again = true;
    else schedule(0);
  }

  /* ------------------------------------------------------------ models */

  async function pollModels() {
    const body = await getJson('/v1/models');
    const models = Array.isArray(body.models) ? body.models : [];
    state.models = models;
    const key = models.map((m) => m.name).join('\n');
    const sel = $('model');
    if (key !== state.modelsKey) {
      state.modelsKey = key;
      const keep = sel.value;
      sel.replaceChildren(...models.map((m) => el('option', { value: m.name }, m.name)));
      if (models.some((m) => m.name === keep)) sel.value = keep;
    }
    showModelDesc();
  }

  function showModelDesc() {
    const m = state.models.find((x) => x.name === $('model').value);
    setText($('model-desc'), m ? (m.description || '') + ' (' + m.ready_workers + ' of ' + m.workers + ' workers ready)' : '');
  }

  /* ------------------------------------------------------------ jobs list */

  async function pollJobs() {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (state.filter) q.set('status', state.filter);
    if (state.after) q.set('after', state.after);
    const key = q.toString();
    const cache = state.listCache && state.listCache.key === key ? state.listCache : null;
    const headers = {};
    if (cache) headers['If-None-Match'] = cache.etag;
    const res = await api('/v1/jobs?' + key, { headers });
    if (res.status === 404 && state.after) {
      /* the job the page started after is gone (batchd restarted): first page */
      state.after = null;
      state.afterStack = [];
      return pollJobs();
    }
    let list;
    if (res.status === 304 && cache) {
      /* nothing changed; rendered again all the same, for the ages */
      list = cache.list;
    } else {
      if (!res.ok) throw new ApiError(res.status, await problemOf(res));
      list = await res.json();
      const etag = res.headers.get('ETag');
      state.listCache = etag ? { key, etag, list } : null;
    }
    renderJobs(list.jobs || []);
    state.nextAfter = list.next_after || null;
    renderPager();
  }

  function renderPager() {
    $('page-newer').disabled = state.after === null;
    $('page-older').disabled = !state.nextAfter;
    setText($('page-info'), state.after === null ? 'Newest' : 'Page ' + (state.afterStack.length + 2));
  }

  function makeBar() {
    return el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0 },
      el('span', { class: 'seg seg-done' }), el('span', { class: 'seg seg-failed' }), el('span', { class: 'seg seg-cancelled' }));
  }

  /* Sets a progress bar (done, failed, cancelled segments of total) and
   * returns its text, "50 / 60 (2 failed)". */
  function setBar(bar, c) {
    const total = c.total || 0;
    const fin = (c.done || 0) + (c.failed || 0);
    /* floor: 100 % only when every item has its result */
    const pct = total ? Math.floor((100 * fin) / total) : 0;
    const segs = bar.children;
    const w = (n) => (total ? (100 * n) / total : 0).toFixed(3) + '%';
    if (segs[0].style.width !== w(c.done || 0)) segs[0].style.width = w(c.done || 0);
    if (segs[1].style.width !== w(c.failed || 0)) segs[1].style.width = w(c.failed || 0);
    if (segs[2].style.width !== w(c.cancelled || 0)) segs[2].style.width = w(c.cancelled || 0);
    let text = fmtInt(fin) + ' / ' + fmtInt(total);
    const extra = [];
    if (c.failed) extra.push(fmtInt(c.failed) + ' failed');
    if (c.cancelled) extra.push(fmtInt(c.cancelled) + ' cancelled');
    if (extra.length) text += ' (' + extra.join(', ') + ')';
    setAttr(bar, 'aria-valuenow', pct);
    setAttr(bar, 'aria-valuetext', pct + '%: ' + text);
    return { pct, text };
  }

  function setBadge(b, status) {
    setText(b, status);
    const cls = 'badge s-' + status;
    if (b.className !== cls) b.className = cls;
  }

  function createJobRow(job) {
    const btn = el('button', { type: 'button', class: 'linkish', title: job.id, 'aria-label': 'Job ' + job.id }, shortId(job.id));
    btn.addEventListener('click', (ev) => { ev.stopPropagation(); selectJob(job.id, true); });
    const tr = el('tr', { 'data-id': job.id },
      el('td', { class: 'c-id' }, btn),
      el('td', { class: 'c-model' }),
      el('td', { class: 'c-status' }, el('span', { class: 'badge' })),
      el('td', { class: 'c-progress' }, makeBar(), el('span', { class: 'bar-text' })),
      el('td', { class: 'c-tput num', 'data-label': 'Throughput' }),
      el('td', { class: 'c-eta num', 'data-label': 'ETA' }),
      el('td', { class: 'c-age num', 'data-label': 'Age' }));
    tr.addEventListener('click', () => selectJob(job.id, true));
    return tr;
  }

  function updateJobRow(tr, job, now) {
    const cells = tr.children;
    setText(cells[1], job.model);
    setBadge(cells[2].firstChild, job.status);
    const bar = cells[3].firstChild;
    const r = setBar(bar, job.counts || {});
    setAttr(bar, 'aria-label', 'Progress of job ' + shortId(job.id));
    setText(cells[3].lastChild, r.text);
    setText(cells[4], job.throughput === null ? '–' : fmtRate(job.throughput) + '/s');
    setText(cells[5], job.status === 'running' || job.status === 'queued' ? fmtDuration(job.eta_seconds) : '–');
    setText(cells[6], fmtAge(secondsSince(job.created_at, now)));
    const selected = state.sel && state.sel.id === job.id;
    tr.classList.toggle('selected', !!selected);
    const btn = cells[0].firstChild;
    if (selected) setAttr(btn, 'aria-current', 'true');
    else if (btn.hasAttribute('aria-current')) btn.removeAttribute('aria-current');
  }

  /* Keyed, in-place update of a tbody: rows are moved only when the order
   * changed, so a focused button keeps its focus across polls. */
  function syncRows(tbody, items, key, create, update) {
    const existing = new Map();
    for (const tr of Array.from(tbody.children)) existing.set(tr.getAttribute('data-id'), tr);
    items.forEach((item, i) => {
      const k = String(key(item));
      let tr = existing.get(k);
      if (!tr) tr = create(item);
      existing.delete(k);
      update(tr, item);
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    for (const tr of existing.values()) tr.remove();
  }

  function renderJobs(jobs) {
    const now = Date.now();
    syncRows($('jobs-body'), jobs, (j) => j.id, createJobRow, (tr, j) => updateJobRow(tr, j, now));
    $('jobs-empty').hidden = jobs.length > 0;
    setText($('jobs-empty'), state.filter ? 'No ' + state.filter + ' jobs.' : 'No jobs yet.');
    /* announce status changes seen between polls (not on the first load) */
    const changes = [];
    for (const j of jobs) {
      const before = state.statuses.get(j.id);
      if (state.listSeen && before !== undefined && before !== j.status) changes.push('Job ' + shortId(j.id) + ' ' + j.status + '.');
      state.statuses.set(j.id, j.status);
    }
    state.listSeen = true;
    if (changes.length) announce(changes.slice(0, ANNOUNCE_MAX).join(' '));
    if (state.statuses.size > 2000) state.statuses.clear();
  }

  function changePage(dir) {
    if (dir > 0 && state.nextAfter) {
      state.afterStack.push(state.after);
      state.after = state.nextAfter;
    } else if (dir < 0 && state.after !== null) {
      state.after = state.afterStack.length ? state.afterStack.pop() : null;
    }
    renderPager();
    pollNow();
  }

  /* ------------------------------------------------------------ detail */

  function selectJob(id, focus) {
    if (!state.sel || state.sel.id !== id) {
      state.sel = { id, job: null, etag: null, gone: false, resultsKey: '', resultsAt: 0, results: null, resultsNext: null };
      $('detail-empty').hidden = true;
      $('detail-body').hidden = false;
      setText($('d-id'), id);
      setText($('d-msg'), '');
      for (const tr of $('jobs-body').children) {
        const sel = tr.getAttribute('data-id') === id;
        tr.classList.toggle('selected', sel);
        const b = tr.querySelector('button');
        if (sel) b.setAttribute('aria-current', 'true'); else b.removeAttribute('aria-current');
      }
      renderResults();
    }
    if (focus) {
      /* to the detail, for keyboards and screen readers; scroll only when
       * it is out of sight (below the list on a phone) */
      const h = $('detail-heading');
      const r = h.getBoundingClientRect();
      h.focus({ preventScroll: r.top >= 0 && r.bottom <= window.innerHeight });
    }
    pollNow();
  }

  async function pollSelected() {
    const sel = state.sel;
    if (!sel || sel.gone) return;
    const headers = {};
    if (sel.etag) headers['If-None-Match'] = sel.etag;
    const res = await api('/v1/jobs/' + encodeURIComponent(sel.id), { headers });
    if (state.sel !== sel) return;
    if (res.status === 304) {
      renderDetail();
      return;
    }
    if (res.status === 404) {
      sel.gone = true;
      sel.etag = null;
      setText($('d-msg'), 'This job no longer exists (batchd restarted, or it expired).');
      $('d-cancel').disabled = true;
      return;
    }
    if (!res.ok) throw new ApiError(res.status, await problemOf(res));
    sel.etag = res.headers.get('ETag');
    sel.job = await res.json();
    renderDetail();
    await maybeFetchResults(sel);
  }

  /* Fetches the first page of results when the job moved on since the last
   * fetch (at most every RESULTS_REFRESH_MS while it runs). */
  async function maybeFetchResults(sel) {
    const j = sel.job;
    if (!j) return;
    const c = j.counts || {};
    const key = j.status + ':' + c.done + ':' + c.failed;
    if (key === sel.resultsKey) return;
    const finished = j.status !== 'queued' && j.status !== 'running';
    if (!finished && performance.now() - sel.resultsAt < RESULTS_REFRESH_MS) return;
    const res = await api('/v1/jobs/' + encodeURIComponent(sel.id) + '/results?limit=' + RESULTS_PAGE);
    if (state.sel !== sel) return;
    if (!res.ok) {
      if (res.status === 404) return;
      throw new ApiError(res.status, await problemOf(res));
    }
    const page = await res.json();
    sel.results = Array.isArray(page.results) ? page.results : [];
    sel.resultsNext = page.next_offset;
    sel.resultsKey = key;
    sel.resultsAt = performance.now();
    renderResults();
  }

  function renderDetail() {
    const sel = state.sel;
    if (!sel || !sel.job) return;
    const j = sel.job;
    const c = j.counts || {};
    const now = Date.now();
    const prev = sel.shownStatus;
    setText($('d-id'), j.id);
    setBadge($('d-status'), j.status);
    const r = setBar($('d-bar'), c);
    setText($('d-bar-label'), r.pct + '% · ' + r.text);
    setText($('d-model'), j.model);
    setText($('d-total'), fmtInt(c.total));
    setText($('d-done'), fmtInt(c.done));
    setText($('d-failed'), fmtInt(c.failed));
    setText($('d-cancelled'), fmtInt(c.cancelled));
    setText($('d-tput'), j.throughput === null ? '–' : fmtRate(j.throughput) + ' items/s');
    const active = j.status === 'queued' || j.status === 'running';
    setText($('d-eta'), active ? fmtDuration(j.eta_seconds) : '–');
    setText($('d-chunk'), j.chunk_size === null ? 'adaptive' : fmtInt(j.chunk_size));
    setText($('d-created'), fmtTime(j.created_at) + ' (' + fmtAge(secondsSince(j.created_at, now)) + ' ago)');
    setText($('d-started'), j.started_at ? fmtTime(j.started_at) + ' (after ' + fmtDuration((Date.parse(j.started_at) - Date.parse(j.created_at)) / 1000) + ')' : '–');
    setText($('d-finished'), j.finished_at ? fmtTime(j.finished_at) : '–');
    let run = null;
    if (j.started_at) run = ((j.finished_at ? Date.parse(j.finished_at) : now) - Date.parse(j.started_at)) / 1000;
    setText($('d-runtime'), fmtDuration(run));
    $('d-error').hidden = !j.error;
    setText($('d-error'), j.error ? 'Job failed: ' + j.error : '');
    const cancel = $('d-cancel');
    const canCancel = active && !sel.cancelling;
    if (cancel.disabled === canCancel) cancel.disabled = !canCancel;
    if (prev !== undefined && prev !== j.status) announce('Job ' + shortId(j.id) + ' is now ' + j.status + '.');
    sel.shownStatus = j.status;
  }

  function renderResults() {
    const sel = state.sel;
    const outs = $('d-results');
    const errs = $('d-errors');
    const results = sel && sel.results ? sel.results : [];
    const ok = results.filter((r) => Object.prototype.hasOwnProperty.call(r, 'output'));
    const bad = results.filter((r) => r.error);
    outs.replaceChildren(...ok.slice(0, RESULTS_SHOWN).map((r) =>
      el('li', {}, el('span', { class: 'idx' }, '#' + r.index), ' → ', jsonPreview(r.output, 120))));
    errs.replaceChildren(...bad.slice(0, RESULTS_SHOWN).map((r) =>
      el('li', {}, el('span', { class: 'idx' }, '#' + r.index), ' ', String(r.error.message))));
    const seen = results.length;
    let note = '';
    if (!sel || !sel.results) note = 'Loading…';
    else if (ok.length === 0) note = 'No output yet.';
    else note = 'Showing ' + Math.min(ok.length, RESULTS_SHOWN) + ' of the first ' + fmtInt(seen) + ' results.';
    setText($('d-results-note'), note);
    setText($('d-errors-note'), !sel || !sel.results ? '' : bad.length === 0 ? 'No error in the first ' + fmtInt(seen) + ' results.'
      : bad.length + ' error' + (bad.length === 1 ? '' : 's') + ' in the first ' + fmtInt(seen) + ' results.');
  }

  async function cancelSelected() {
    const sel = state.sel;
    if (!sel) return;
    if (!window.confirm('Cancel job ' + sel.id + '?\n\nItems not yet run will not run; results so far are kept.')) return;
    sel.cancelling = true;
    $('d-cancel').disabled = true;
    setText($('d-msg'), 'Cancelling…');
    try {
      const res = await api('/v1/jobs/' + encodeURIComponent(sel.id), { method: 'DELETE' });
      if (res.ok) {
        sel.job = await res.json();
        sel.etag = null; /* the next poll fetches the job afresh */
        setText($('d-msg'), 'Cancelled.');
        announce('Job ' + shortId(sel.id) + ' cancelled.');
      } else {
        const p = await problemOf(res);
        setText($('d-msg'), (p.title || 'Error') + ': ' + (p.detail || res.status));
      }
    } catch (e) {
      setText($('d-msg'), 'Could not reach batchd: ' + e.message);
    } finally {
      sel.cancelling = false;
      renderDetail();
      pollNow();
    }
  }

  /* ------------------------------------------------------------ workers */

  async function pollWorkers() {
    const body = await getJson('/v1/workers');
    renderWorkers(Array.isArray(body.workers) ? body.workers : []);
  }

  /* A worker as a tile: id and state, PID and current job, items done and
   * restarts, RSS and PSS; the tile's colour is its state. */
  function createWorkerTile(w) {
    const job = el('button', { type: 'button', class: 'linkish' });
    job.addEventListener('click', () => { const id = job.getAttribute('data-job'); if (id) selectJob(id, true); });
    return el('li', { class: 'wtile', 'data-id': w.id },
      el('div', { class: 'wt-row' }, el('span', { class: 'wt-id' }), el('span', { class: 'badge' })),
      el('div', { class: 'wt-row' }, el('span', {}, 'pid ', el('span', { class: 'wt-pid' })), el('span', { class: 'wt-job' }, job, el('span', { class: 'hint' }))),
      el('div', { class: 'wt-items' }),
      el('div', { class: 'wt-mem' }));
  }

  function updateWorkerTile(li, w) {
    const cls = 'wtile w-' + w.state;
    if (li.className !== cls) li.className = cls;
    setText(li.querySelector('.wt-id'), 'Worker ' + w.id);
    setBadge(li.querySelector('.badge'), w.state);
    setText(li.querySelector('.wt-pid'), w.pid === null ? '–' : w.pid);
    const btn = li.querySelector('.wt-job button');
    btn.hidden = !w.current_job;
    setText(btn, w.current_job ? shortId(w.current_job) : '');
    setAttr(btn, 'data-job', w.current_job || '');
    setAttr(btn, 'aria-label', w.current_job ? 'Show job ' + w.current_job : 'No job');
    setText(li.querySelector('.wt-job .hint'), w.current_job ? '' : 'no job');
    /* planned replacements (max_items, max_rss) are not crashes: shown apart */
    setText(li.querySelector('.wt-items'), fmtInt(w.items_done) + ' items' +
      (w.items_failed ? ' (' + fmtInt(w.items_failed) + ' failed)' : '') + ' · ' + fmtInt(w.restarts) + ' restart' + (w.restarts === 1 ? '' : 's') +
      (w.recycles ? ' · ' + fmtInt(w.recycles) + ' recycled' : ''));
    setText(li.querySelector('.wt-mem'), 'RSS ' + fmtBytes(w.rss_bytes) + ' · PSS ' + fmtBytes(w.pss_bytes));
  }

  function createModelCard(name) {
    return el('article', { class: 'model-card', 'data-id': name, 'aria-label': 'Model ' + name },
      el('h3', {}, el('span', {}, name), el('span', { class: 'model-meta' })),
      el('p', { class: 'model-desc hint' }),
      el('ul', { class: 'tiles', 'aria-label': 'Workers of model ' + name }));
  }

  function updateModelCard(card, group) {
    const m = group.model;
    const desc = card.querySelector('.model-desc');
    setText(desc, m.description || '');
    setAttr(desc, 'title', m.description || '');
    const text = m.ready_workers + ' of ' + m.workers + ' ready · load ' + fmtDuration(m.load_seconds) +
      ' · init ' + (m.init_seconds === null ? '–' : fmtDuration(m.init_seconds)) + (m.builtin ? ' · built in' : ' · plugin');
    setText(card.querySelector('.model-meta'), text);
    syncRows(card.querySelector('.tiles'), group.workers, (w) => w.id, createWorkerTile, updateWorkerTile);
  }

  function renderWorkers(workers) {
    const box = $('workers-body');
    let grid = box.querySelector('.models');
    if (!grid) {
      grid = el('div', { class: 'models' });
      box.replaceChildren(grid);
    }
    const groups = state.models.map((m) => ({ model: m, workers: workers.filter((w) => w.model === m.name) }));
    /* workers of a model /v1/models did not list (should not happen) */
    const known = new Set(state.models.map((m) => m.name));
    for (const w of workers) {
      if (known.has(w.model)) continue;
      known.add(w.model);
      groups.push({ model: { name: w.model, description: '', workers: 0, ready_workers: 0, load_seconds: null, init_seconds: null },
        workers: workers.filter((x) => x.model === w.model) });
    }
    syncRows(grid, groups, (g) => g.model.name, (g) => createModelCard(g.model.name), updateModelCard);
    if (groups.length === 0) box.replaceChildren(el('p', { class: 'empty' }, 'No model is loaded.'));
    const busy = workers.filter((w) => w.state === 'busy').length;
    const down = workers.filter((w) => w.state !== 'busy' && w.state !== 'idle').length;
    setText($('sum-workers'), fmtInt(busy) + ' / ' + fmtInt(workers.length));
    setText($('sum-workers-sub'), down ? down + ' starting or down' : groups.length + ' model' + (groups.length === 1 ? '' : 's'));
  }

  /* ------------------------------------------------------------ metrics */

  async function pollMetrics() {
    const res = await api('/metrics');
    if (!res.ok) throw new ApiError(res.status, await problemOf(res));
    const text = await res.text();
    const running = Chart.sample(text, 'batchd_jobs', 'status="running"');
    const queuedJobs = Chart.sample(text, 'batchd_jobs', 'status="queued"');
    const queuedItems = Chart.sample(text, 'batchd_queued_items');
    state.active = (running || 0) + (queuedJobs || 0) > 0;
    setText($('sum-running'), fmtInt(running));
    setText($('sum-running-sub'), queuedJobs ? '+ ' + fmtInt(queuedJobs) + ' queued' : '');
    setText($('sum-queued'), fmtInt(queuedItems));
    const done = Chart.sample(text, 'batchd_items_done_total');
    const failed = Chart.sample(text, 'batchd_items_failed_total');
    if (done === null && failed === null) return;
    const total = (done || 0) + (failed || 0);
    const t = performance.now();
    const last = state.metrics;
    if (last && t - last.t >= 200) {
      if (total >= last.total) state.rates.push({ t, v: ((total - last.total) * 1000) / (t - last.t) });
      else state.rates.push({ t, v: null }); /* the counters restarted */
    }
    if (!last || t - last.t >= 200) state.metrics = { t, total };
    while (state.rates.length && state.rates[0].t < t - RATES_KEEP_MS) state.rates.shift();
    drawChart();
  }

  const WINDOW_NAMES = { 60000: 'the last minute', 300000: 'the last 5 minutes', 3600000: 'the last hour' };

  function drawChart() {
    const now = performance.now();
    const auto = state.chartWin === 'auto';
    const win = auto ? Chart.autoWindow(state.rates, now, state.active) : Number(state.chartWin) * 1000;
    const r = Chart.draw($('chart'), state.rates, win, now);
    setText($('rate-now'), fmtRate(r.current));
    setText($('rate-peak'), fmtRate(r.peak));
    setText($('sum-rate'), fmtRate(r.current));
    setText($('sum-rate-sub'), r.peak ? 'peak ' + fmtRate(r.peak) : '');
    setText($('chart-window'), WINDOW_NAMES[win] + (auto ? ' (auto: ' + (state.active ? 'a job is running' : 'since the last items') + ')' : ''));
    setAttr($('chart'), 'aria-label', r.peak !== null
      ? 'Throughput over ' + WINDOW_NAMES[win] + ': now ' + fmtRate(r.current) + ' items per second, peak ' + fmtRate(r.peak) + '.'
      : 'Throughput chart: no data yet.');
    for (const b of document.querySelectorAll('button.win')) {
      const v = b.getAttribute('data-win');
      setAttr(b, 'aria-pressed', v === state.chartWin ? 'true' : 'false');
      b.classList.toggle('shown', !auto ? false : Number(v) * 1000 === win);
    }
  }

  /* ------------------------------------------------------------ submit */

  /* How the text (or a file's start) should be sent: 'json' or 'ndjson'. */
  function detectFormat(text, fileName) {
    const chosen = document.querySelector('input[name="format"]:checked').value;
    if (chosen !== 'auto') return chosen;
    if (fileName) {
      if (/\.(ndjson|jsonl)$/i.test(fileName)) return 'ndjson';
      if (/\.json$/i.test(fileName)) return 'json';
    }
    const t = text.trim();
    if (!t.startsWith('[')) return 'ndjson';
    try {
      if (Array.isArray(JSON.parse(t))) return 'json';
    } catch (e) { /* not one JSON document */ }
    /* "[1,2]\n[3,4]" is NDJSON of arrays; "[1, 2" a broken array */
    const first = t.split('\n')[0].trim();
    try { JSON.parse(first); return 'ndjson'; } catch (e) { return 'json'; }
  }

  function clearProblem() {
    $('problem').hidden = true;
  }

  /*
   * Where a problem points, in the user's own text. A JSON array is sent
   * inside '{"model":...,"inputs":' + text + '}', so batchd's line 1 columns
   * count the prefix, its pointers start with /inputs, and an array left
   * open is reported at the '}' the page added: all three are turned back
   * into the text the user typed (ctx.text; ctx.prefixLen for JSON).
   * Returns {line, col, end, item, pointer} (col 1-based or null; end: the
   * position is past the user's last character).
   */
  function locate(p, ctx) {
    const loc = { line: null, col: null, end: false, item: null, pointer: null };
    if (p.pointer !== undefined) {
      let ptr = String(p.pointer);
      if (ctx && ctx.prefixLen) {
        if (ptr === '' || ptr === '/') ptr = '';
        else if (ptr === '/inputs') ptr = '(your items: the whole text)';
        else if (ptr.startsWith('/inputs/')) ptr = ptr.slice('/inputs'.length);
      }
      const m = /^\/(\d+)(?:\/|$)/.exec(ptr);
      if (m) loc.item = Number(m[1]);
      loc.pointer = ptr;
    } else if (p.index !== undefined) {
      loc.item = p.index;
    }
    if (p.line !== undefined) {
      loc.line = p.line;
      loc.col = p.column !== undefined ? p.column : null;
      if (ctx && ctx.prefixLen && loc.line === 1 && loc.col !== null) loc.col = Math.max(loc.col - ctx.prefixLen, 0);
      if (ctx && typeof ctx.text === 'string') {
        const lines = ctx.text.split('\n');
        /* past the user's text: in what the page added around it */
        while (lines.length > 1 && lines[lines.length - 1].trim() === '') lines.pop();
        const last = lines.length;
        const lastLen = lines[last - 1].replace(/\s+$/, '').length;
        if (loc.line > last || (loc.line === last && loc.col !== null && loc.col > lastLen)) {
          loc.end = true;
          loc.line = last;
          loc.col = lastLen + 1;
        }
      }
    }
    return loc;
  }

  /* Shows a problem+json: title and status, detail, and where (pointer,
   * item, line and column in the user's own text, limit). */
  function showProblem(p, ctx) {
    setText($('problem-title'), (p.title || 'Error') + (p.status ? ' (' + p.status + ')' : ''));
    const loc = locate(p, ctx);
    let detail = p.detail || '';
    if (loc.line !== null) {
      /* batchd's "line L, column C" counts the wrapper: say the user's own */
      const mine = loc.end ? 'the end of your text (line ' + loc.line + ')'
        : 'line ' + loc.line + (loc.col !== null ? ', column ' + loc.col : '') + (ctx && ctx.source ? ' of ' + ctx.source : '');
      detail = detail.replace(/at line \d+, column \d+/, 'at ' + mine).replace(/line \d+, column \d+/, mine);
      /* past the end, batchd names the '}' the page added: say what it means */
      if (loc.end) detail = detail.replace(/:.*$/s, ': the JSON is not complete there (an unclosed array, object or string).');
    }
    setText($('problem-detail'), detail);
    const where = [];
    if (typeof p.type === 'string') where.push(['Type', p.type.replace(/^urn:batchd:problem:/, '')]);
    if (loc.pointer !== null) where.push(['Pointer', (loc.pointer || '(the whole body)') + (loc.item !== null ? ' — item ' + loc.item : '')]);
    else if (loc.item !== null) where.push(['Item', String(loc.item)]);
    if (loc.line !== null) {
      where.push(['Line', loc.end ? loc.line + ', at the end of ' + (ctx && ctx.source ? ctx.source : 'your text') + ': something is missing there'
        : loc.line + (loc.col !== null ? ', column ' + loc.col : '') + (ctx && ctx.source ? ' of ' + ctx.source : '')]);
    }
    if (p.limit !== undefined) where.push(['Limit', fmtInt(p.limit)]);
    $('problem-where').replaceChildren(...where.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    const ex = $('problem-excerpt');
    ex.hidden = true;
    if (loc.line !== null && ctx && typeof ctx.text === 'string') {
      const src = ctx.text.split('\n')[loc.line - 1];
      if (src !== undefined) {
        const c = loc.col !== null ? Math.max(loc.col - 1, 0) : null;
        let from = 0;
        if (c !== null && c > 60) from = c - 40;
        const shown = src.slice(from, from + 100).replace(/\t/g, ' ');
        ex.textContent = (from ? '…' : '') + shown + (c !== null ? '\n' + ' '.repeat(c - from + (from ? 1 : 0)) + '^' : '');
        ex.hidden = false;
      }
    }
    $('problem').hidden = false;
  }

  /* The submit panel: a modal dialog (focus stays in it; Escape closes). */
  function openSubmit() {
    const d = $('submit-panel');
    if (!d.open) {
      if (typeof d.showModal === 'function') d.showModal(); else d.setAttribute('open', '');
    }
    $('model').focus();
  }

  function closeSubmit() {
    const d = $('submit-panel');
    if (d.open) {
      if (typeof d.close === 'function') d.close(); else d.removeAttribute('open');
    }
  }

  let chosenFile = null;

  async function submitJob(ev) {
    ev.preventDefault();
    clearProblem();
    const model = $('model').value;
    const btn = $('submit-btn');
    if (!model) {
      showProblem({ title: 'No model', detail: 'batchd has not listed its models yet; wait for the connection.' });
      return;
    }
    let body;
    let format;
    let ctx;
    if (chosenFile) {
      const head = await chosenFile.slice(0, 65536).text();
      format = detectFormat(head, chosenFile.name);
      ctx = { source: chosenFile.name };
      /* a small file's text, to quote the line a problem points at */
      if (chosenFile.size <= 1048576) ctx.text = await chosenFile.text();
      body = chosenFile;
    } else {
      const text = $('items').value;
      if (!text.trim()) {
        showProblem({ title: 'No items', detail: 'Paste a JSON array or NDJSON lines, or choose a file.' });
        $('items').focus();
        return;
      }
      format = detectFormat(text, null);
      ctx = { source: 'the items', text };
      body = text;
    }
    let path = '/v1/jobs';
    let ctype = 'application/json';
    if (format === 'json') {
      const prefix = '{"model":' + JSON.stringify(model) + ',"inputs":';
      ctx.prefixLen = prefix.length;
      body = new Blob([prefix, body, '}'], { type: ctype });
    } else {
      path += '?model=' + encodeURIComponent(model);
      ctype = 'application/x-ndjson';
    }
    btn.disabled = true;
    setText($('submit-msg'), 'Submitting…');
    try {
      const res = await api(path, { method: 'POST', headers: { 'Content-Type': ctype }, body, timeoutMs: SUBMIT_TIMEOUT_MS });
      if (res.status === 202) {
        const job = await res.json();
        const msg = 'Job ' + shortId(job.id) + ' accepted: ' + fmtInt(job.counts && job.counts.total) + ' items (' + format + ').';
        setText($('submit-msg'), msg);
        setText($('jobs-msg'), msg);
        /* the panel closes: the new job is the list's first row, selected */
        closeSubmit();
        /* show it: the first page of the list, and its detail */
        state.after = null;
        state.afterStack = [];
        if (state.filter && state.filter !== job.status) {
          state.filter = '';
          $('status-filter').value = '';
        }
        selectJob(job.id, false);
      } else {
        setText($('submit-msg'), '');
        showProblem(await problemOf(res), ctx);
      }
    } catch (e) {
      setText($('submit-msg'), '');
      showProblem({ title: 'batchd did not answer', detail: e.message });
    } finally {
      btn.disabled = false;
    }
  }

  /* ------------------------------------------------------------ wiring */

  function init() {
    $('token').value = token();
    showTokenState();
    $('auth-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      try {
        const t = $('token').value.trim();
        if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
      } catch (e) { /* storage refused: nothing kept */ }
      showTokenState();
      pollNow();
    });
    $('token-clear').addEventListener('click', () => {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
      $('token').value = '';
      showTokenState();
    });
    $('retry-now').addEventListener('click', pollNow);
    $('model').addEventListener('change', showModelDesc);
    $('submit-form').addEventListener('submit', submitJob);
    $('file').addEventListener('change', () => {
      const f = $('file').files[0] || null;
      chosenFile = f;
      $('items').disabled = !!f;
      $('file-clear').hidden = !f;
      setText($('submit-msg'), f ? 'File ' + f.name + ' (' + fmtBytes(f.size) + ') will be sent.' : '');
    });
    $('file-clear').addEventListener('click', () => {
      chosenFile = null;
      $('file').value = '';
      $('items').disabled = false;
      $('file-clear').hidden = true;
      setText($('submit-msg'), '');
      $('file').focus();
    });
    $('status-filter').addEventListener('change', () => {
      state.filter = $('status-filter').value;
      state.after = null;
      state.afterStack = [];
      renderPager();
      pollNow();
    });
    $('page-newer').addEventListener('click', () => changePage(-1));
    $('page-older').addEventListener('click', () => changePage(1));
    $('d-cancel').addEventListener('click', cancelSelected);
    $('new-job').addEventListener('click', () => { setText($('jobs-msg'), ''); setText($('submit-msg'), ''); openSubmit(); });
    $('submit-close').addEventListener('click', () => { closeSubmit(); $('new-job').focus(); });
    /* a click on the backdrop (outside the drawer's box) closes it */
    $('submit-panel').addEventListener('click', (ev) => {
      if (ev.target === $('submit-panel')) { closeSubmit(); $('new-job').focus(); }
    });
    for (const b of document.querySelectorAll('button.win')) {
      b.addEventListener('click', () => { state.chartWin = b.getAttribute('data-win'); drawChart(); });
    }
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) {
        if (!state.busy && state.online !== false) schedule(HIDDEN_POLL_MS);
      } else {
        pollNow();
      }
    });
    if (typeof ResizeObserver === 'function') new ResizeObserver(() => drawChart()).observe($('chart').parentElement);
    drawChart();
    tick();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
