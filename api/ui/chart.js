/*
 * batchd dashboard: reading /metrics and drawing the throughput chart.
 *
 * Loaded before app.js (both `defer`, so in order); exposes one object,
 * window.BatchdChart, and touches no DOM but the canvas it is given:
 *   sample(text, name, label)  the sum of a metric's samples in Prometheus
 *                              text (only those whose labels contain
 *                              `label`, e.g. 'status="running"'), or null;
 *   autoWindow(rates, now, active)  the window (ms) that shows what happened:
 *                              the last minute while a job runs or is queued,
 *                              else the shortest of 1 min, 5 min, 1 h that
 *                              holds the last items done (5 min when none);
 *   draw(canvas, rates, windowMs, now)  draws rates ({t, v}: items/s at
 *                              performance.now() t; v null = a gap) over the
 *                              last windowMs; returns {current, peak}.
 * No charting library: a canvas, a grid, and a filled line per run of points.
 */
'use strict';

(function () {
  const WINDOWS = [60000, 300000, 3600000];
  const nf = new Intl.NumberFormat('en-US');

  function fmtRate(r) {
    if (r === null || r === undefined || !isFinite(r)) return '–';
    if (r >= 100) return nf.format(Math.round(r));
    if (r >= 10) return r.toFixed(1);
    if (r >= 0.1) return r.toFixed(2);
    return r === 0 ? '0' : r.toPrecision(2);
  }

  function sample(text, name, label) {
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
        if (label && !rest.slice(0, end).includes(label)) continue;
        rest = rest.slice(end + 1);
      } else if (label) {
        continue;
      }
      const v = parseFloat(rest.trim().split(/\s+/)[0]);
      if (isFinite(v)) { sum += v; found = true; }
    }
    return found ? sum : null;
  }

  function autoWindow(rates, now, active) {
    if (active) return WINDOWS[0];
    for (let i = rates.length - 1; i >= 0; i--) {
      if (rates[i].v) {
        const age = now - rates[i].t;
        for (const w of WINDOWS) if (age <= w) return w;
        break;
      }
    }
    return WINDOWS[1];
  }

  /* A round axis maximum at or above v: 1, 2, 5 × 10^k. */
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  /* x-axis ticks of a window: [step (ms), label of n steps ago]. */
  function ticks(windowMs, narrow) {
    if (windowMs <= 60000) return [10000, (n) => '−' + n * 10 + (narrow ? 's' : ' s')];
    if (windowMs <= 300000) return [60000, (n) => '−' + n + (narrow ? 'm' : ' min')];
    return [600000, (n) => '−' + n * 10 + (narrow ? 'm' : ' min')];
  }

  function draw(canvas, rates, windowMs, now) {
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
    const pts = rates.filter((p) => p.t >= now - windowMs);
    const vals = pts.filter((p) => p.v !== null).map((p) => p.v);
    const peak = vals.length ? Math.max(...vals) : null;
    const current = pts.length && pts[pts.length - 1].v !== null ? pts[pts.length - 1].v : null;

    const left = 52, right = 10, top = 10, bottom = 24;
    const w = cssW - left - right;
    const h = cssH - top - bottom;
    const ymax = niceMax(peak || 0);
    ctx.font = '12px system-ui, "DejaVu Sans", sans-serif';
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 1;
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
    const [step, label] = ticks(windowMs, w < 380);
    const n = Math.round(windowMs / step);
    ctx.textBaseline = 'top';
    ctx.fillStyle = '#4b5261';
    /* labels at least ~44 px apart: every other one on a phone */
    const every = w / n < 44 ? 2 : 1;
    for (let m = n; m >= 0; m--) {
      if (m % every) continue;
      const x = left + w - (w * m) / n;
      ctx.textAlign = m === n ? 'left' : m === 0 ? 'right' : 'center';
      ctx.fillText(m === 0 ? 'now' : label(m), m === 0 ? left + w : x, top + h + 6);
    }
    if (!vals.length) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('Waiting for items to finish…', left + w / 2, top + h / 2);
      return { current, peak };
    }
    const xOf = (t) => left + w - (w * (now - t)) / windowMs;
    const yOf = (v) => top + h - (h * v) / ymax;
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
      ctx.lineWidth = windowMs > 300000 ? 1.5 : 2;
      ctx.stroke();
      ctx.lineWidth = 1;
    }
    return { current, peak };
  }

  window.BatchdChart = { sample, autoWindow, draw, fmtRate, WINDOWS };
})();
