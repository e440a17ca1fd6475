/*
 * batchd dashboard: plain JavaScript, no framework, no network but batchd.
 *
 * One polling loop (tick) runs at a time, never overlapping itself:
 *   - every tick: the jobs list and the selected job (GET /v1/jobs?... and
 *     GET /v1/jobs/{id}, each with If-None-Match: 304 while nothing
 *     changed) and /metrics (the throughput chart);
 *   - every WORKERS_EVERY ticks: /v1/workers and /v1/models.
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
  const CHART_WINDOW_MS = 5 * 60 * 1000;
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

  function fmtRate(r) {
    if (r === null || r === undefined || !isFinite(r)) return '–';
    if (r >= 100) return nf.format(Math.round(r));
    if (r >= 10) return r.toFixed(1);
    if (r >= 0.1) return r.toFixed(2);
    return r === 0 ? '0' : r.toPrecision(2);
  }

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

  function createWorkerRow(w) {
    const job = el('button', { type: 'button', class: 'linkish' });
    job.addEventListener('click', () => { const id = job.getAttribute('data-job'); if (id) selectJob(id, true); });
    return el('tr', { 'data-id': w.id },
      el('td', { class: 'num', 'data-label': 'Worker' }),
      el('td', { 'data-label': 'State' }, el('span', { class: 'badge' })),
      el('td', { class: 'num', 'data-label': 'PID' }),
      el('td', { 'data-label': 'Job' }, job, el('span', { class: 'hint' })),
      el('td', { class: 'num', 'data-label': 'Items' }),
      el('td', { class: 'num', 'data-label': 'Restarts' }),
      el('td', { class: 'num', 'data-label': 'RSS' }),
      el('td', { class: 'num', 'data-label': 'PSS' }));
  }

  function updateWorkerRow(tr, w) {
    const c = tr.children;
    setText(c[0], w.id);
    setBadge(c[1].firstChild, w.state);
    setText(c[2], w.pid === null ? '–' : w.pid);
    const btn = c[3].firstChild;
    btn.hidden = !w.current_job;
    setText(btn, w.current_job ? shortId(w.current_job) : '');
    setAttr(btn, 'data-job', w.current_job || '');
    setAttr(btn, 'aria-label', w.current_job ? 'Show job ' + w.current_job : 'No job');
    setText(c[3].lastChild, w.current_job ? '' : '–');
    setText(c[4], fmtInt(w.items_done) + (w.items_failed ? ' (' + fmtInt(w.items_failed) + ' failed)' : ''));
    /* planned replacements (max_items, max_rss) are not crashes: shown apart */
    setText(c[5], fmtInt(w.restarts) + (w.recycles ? ' (' + fmtInt(w.recycles) + ' recycled)' : ''));
    setText(c[6], fmtBytes(w.rss_bytes));
    setText(c[7], fmtBytes(w.pss_bytes));
  }

  function createModelCard(name) {
    const head = el('tr', {}, ...['Worker', 'State', 'PID', 'Job', 'Items done', 'Restarts', 'RSS', 'PSS']
      .map((h, i) => el('th', { scope: 'col', class: i === 0 || i >= 4 || i === 2 ? 'num' : null }, h)));
    return el('article', { class: 'model-card', 'data-id': name, 'aria-label': 'Model ' + name },
      el('h3', {}, el('span', {}, name), el('span', { class: 'hint' })),
      el('p', { class: 'model-meta' }),
      el('div', { class: 'table-wrap' },
        el('table', { class: 'workers' },
          el('caption', { class: 'visually-hidden' }, 'Workers of model ' + name),
          el('thead', {}, head), el('tbody', {}))));
  }

  function updateModelCard(card, group) {
    const m = group.model;
    setText(card.querySelector('h3 .hint'), m.description || '');
    const meta = card.querySelector('.model-meta');
    const text = m.ready_workers + ' of ' + m.workers + ' workers ready · load ' + fmtDuration(m.load_seconds) +
      ' · init ' + (m.init_seconds === null ? '–' : fmtDuration(m.init_seconds) + ' (mean)') + (m.builtin ? ' · built in' : ' · plugin');
    setText(meta, text);
    syncRows(card.querySelector('tbody'), group.workers, (w) => w.id, createWorkerRow, updateWorkerRow);
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
  }

  /* ------------------------------------------------------------ metrics */

  /* Sums every sample of the counter `name` in Prometheus text. */
  function counterSum(text, name) {
    let sum = 0;
    let found = false;
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue;
      const next = line.charAt(name.length);
      if (next !== ' ' && next !== '{') continue;
      let rest = line.slice(name.length);
      if (next === '{') {
        const end = rest.lastIndexOf('}');
        if (end < 0) continue;
        rest = rest.slice(end + 1);
      }
      const v = parseFloat(rest.trim().split(/\s+/)[0]);
      if (isFinite(v)) { sum += v; found = true; }
    }
    return found ? sum : null;
  }

  async function pollMetrics() {
    const res = await api('/metrics');
    if (!res.ok) throw new ApiError(res.status, await problemOf(res));
    const text = await res.text();
    const done = counterSum(text, 'batchd_items_done_total');
    const failed = counterSum(text, 'batchd_items_failed_total');
    if (done === null && failed === null) return;
    const total = (done || 0) + (failed || 0);
    const t = performance.now();
    const last = state.metrics;
    if (last && t - last.t >= 200) {
      if (total >= last.total) state.rates.push({ t, v: ((total - last.total) * 1000) / (t - last.t) });
      else state.rates.push({ t, v: null }); /* the counters restarted */
    }
    if (!last || t - last.t >= 200) state.metrics = { t, total };
    while (state.rates.length && state.rates[0].t < t - CHART_WINDOW_MS - 10000) state.rates.shift();
    drawChart();
  }

  /* A round axis maximum at or above v: 1, 2, 5 × 10^k. */
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function drawChart() {
    const canvas = $('chart');
    const box = canvas.parentElement;
    const cssW = Math.max(box.clientWidth, 100);
    const cssH = Math.max(box.clientHeight, 100);
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const now = performance.now();
    const pts = state.rates.filter((p) => p.t >= now - CHART_WINDOW_MS);
    const vals = pts.filter((p) => p.v !== null).map((p) => p.v);
    const peak = vals.length ? Math.max(...vals) : null;
    const current = pts.length && pts[pts.length - 1].v !== null ? pts[pts.length - 1].v : null;
    setText($('rate-now'), fmtRate(current));
    setText($('rate-peak'), fmtRate(peak));
    setAttr(canvas, 'aria-label', vals.length
      ? 'Throughput over the last 5 minutes: now ' + fmtRate(current) + ' items per second, peak ' + fmtRate(peak) + '.'
      : 'Throughput chart: no data yet.');

    const left = 52, right = 10, top = 10, bottom = 24;
    const w = cssW - left - right;
    const h = cssH - top - bottom;
    const ymax = niceMax(peak || 0);
    ctx.font = '12px system-ui, "DejaVu Sans", sans-serif';
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 1;
    /* horizontal grid and y labels */
    for (let i = 0; i <= 4; i++) {
      const y = top + h - (h * i) / 4;
      ctx.strokeStyle = i === 0 ? '#8a93a3' : '#e1e4ea';
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y) + 0.5);
      ctx.lineTo(left + w, Math.round(y) + 0.5);
      ctx.stroke();
      ctx.fillStyle = '#4b5261';
      ctx.textAlign = 'right';
      const v = (ymax * i) / 4;
      ctx.fillText(Number.isInteger(v) ? nf.format(v) : fmtRate(v), left - 6, y);
    }
    /* x labels: minutes ago; short ones on a narrow chart */
    const narrow = w < 380;
    ctx.textBaseline = 'top';
    ctx.fillStyle = '#4b5261';
    for (let m = 5; m >= 0; m--) {
      const x = left + w - (w * m) / 5;
      ctx.textAlign = m === 5 ? 'left' : m === 0 ? 'right' : 'center';
      ctx.fillText(m === 0 ? 'now' : '−' + m + (narrow ? 'm' : ' min'), m === 0 ? left + w : x, top + h + 6);
    }
    if (!vals.length) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillStyle = '#4b5261';
      ctx.fillText('Waiting for items to finish…', left + w / 2, top + h / 2);
      return;
    }
    const xOf = (t) => left + w - (w * (now - t)) / CHART_WINDOW_MS;
    const yOf = (v) => top + h - (h * v) / ymax;
    /* runs of consecutive non-null points, each filled then stroked */
    const runs = [];
    let run = [];
    for (const p of pts) {
      if (p.v === null) { if (run.length) runs.push(run); run = []; } else run.push(p);
    }
    if (run.length) runs.push(run);
    for (const r of runs) {
      ctx.beginPath();
      ctx.moveTo(xOf(r[0].t), yOf(0));
      for (const p of r) ctx.lineTo(xOf(p.t), yOf(p.v));
      ctx.lineTo(xOf(r[r.length - 1].t), yOf(0));
      ctx.closePath();
      ctx.fillStyle = 'rgba(29, 91, 184, 0.15)';
      ctx.fill();
      ctx.beginPath();
      r.forEach((p, i) => (i ? ctx.lineTo(xOf(p.t), yOf(p.v)) : ctx.moveTo(xOf(p.t), yOf(p.v))));
      ctx.strokeStyle = '#1d5bb8';
      ctx.lineWidth = 2;
      ctx.stroke();
      ctx.lineWidth = 1;
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

  /* Shows a problem+json: title and status, detail, and where (pointer,
   * item, line and column in the user's own text, limit). */
  function showProblem(p, ctx) {
    setText($('problem-title'), (p.title || 'Error') + (p.status ? ' (' + p.status + ')' : ''));
    setText($('problem-detail'), p.detail || '');
    const where = [];
    if (typeof p.type === 'string') where.push(['Type', p.type.replace(/^urn:batchd:problem:/, '')]);
    if (p.pointer !== undefined) {
      const m = /^\/(?:inputs\/)?(\d+)(?:\/|$)/.exec(p.pointer);
      where.push(['Pointer', (p.pointer || '(the whole body)') + (m ? ' — item ' + m[1] : '')]);
    }
    if (p.index !== undefined && p.pointer === undefined) where.push(['Item', String(p.index)]);
    let line = null;
    let col = null;
    if (p.line !== undefined) {
      line = p.line;
      col = p.column !== undefined ? p.column : null;
      /* the JSON body wraps the items after a prefix on line 1 */
      if (ctx && ctx.prefixLen && line === 1 && col !== null) col = Math.max(col - ctx.prefixLen, 0);
      where.push(['Line', line + (col !== null ? ', column ' + col : '') + (ctx && ctx.source ? ' of ' + ctx.source : '')]);
    }
    if (p.limit !== undefined) where.push(['Limit', fmtInt(p.limit)]);
    $('problem-where').replaceChildren(...where.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    const ex = $('problem-excerpt');
    ex.hidden = true;
    if (line !== null && ctx && typeof ctx.text === 'string') {
      const src = ctx.text.split('\n')[line - 1];
      if (src !== undefined) {
        const c = col !== null ? Math.max(col - 1, 0) : null;
        let from = 0;
        if (c !== null && c > 60) from = c - 40;
        const shown = src.slice(from, from + 100).replace(/\t/g, ' ');
        ex.textContent = (from ? '…' : '') + shown + (c !== null ? '\n' + ' '.repeat(c - from + (from ? 1 : 0)) + '^' : '');
        ex.hidden = false;
      }
    }
    $('problem').hidden = false;
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
        setText($('submit-msg'), 'Job ' + shortId(job.id) + ' accepted: ' + fmtInt(job.counts && job.counts.total) + ' items (' + format + ').');
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
