// app.js: fleet's dashboard (docs/dashboard.md). Plain browser JavaScript, no framework,
// no build step. Everything it shows comes from the gateway's API with the user's key;
// every text from the API goes into the page through textContent or attribute setters,
// never as HTML.
'use strict';

const KEY_STORE = 'fleet.apiKey';
const MODELS_EVERY_MS = 5000;
const JOBS_EVERY_MS = 3000;
const PAGE = 50;
const MAX_PAGES = 20; // one "Show" or "Load more" follows at most this many cursors
const ID_RE = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/; // fleet job ids (shared/src/job.c)
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);
const RESULT_SHOWN_MAX = 200000; // characters of a result shown as text; the rest downloads

const $ = (id) => document.getElementById(id);

// h('td', {className: 'num'}, 'text', child...): an element whose text children are set as
// text nodes. Attributes are set as properties or with setAttribute, never as markup.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'className' || k === 'textContent' || k === 'value' || k === 'max' ||
        k === 'disabled' || k === 'hidden' || k === 'type' || k === 'href' || k === 'download') el[k] = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

function fmtAge(s) {
  if (s === undefined || s === null || Number.isNaN(s)) return '—';
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

function fmtRate(r) { return r === null || r === undefined ? '—' : r.toFixed(r < 10 ? 2 : 0); }

// ------------------------------------------------------------------ the API ----------

let apiKey = sessionStorage.getItem(KEY_STORE) || '';

// A problem answer, or a transport failure, as an Error that keeps what the API said.
class ApiError extends Error {
  constructor(status, problem, text) {
    const detail = problem && (problem.detail || problem.title);
    super(status ? `${status}${problem && problem.title ? ' ' + problem.title : ''}` +
      `${detail && detail !== (problem && problem.title) ? ': ' + detail : ''}` +
      `${!problem && text ? ': ' + text.slice(0, 300) : ''}` : text);
    this.status = status;
    this.problem = problem || null;
  }
}

function authHeaders(extra) {
  const hd = Object.assign({}, extra || {});
  if (apiKey) hd.Authorization = `Bearer ${apiKey}`;
  return hd;
}

// Calls the API; returns the Response of a 2xx, throws ApiError otherwise. A 401 opens the
// key dialog. A transport failure marks the gateway unreachable, and so does a 503 (its
// Redis is away, or it is shutting down) until an answer comes through again.
async function call(method, path, opts = {}) {
  let res;
  try {
    res = await fetch(path, {method, headers: authHeaders(opts.headers), body: opts.body,
      signal: opts.signal, cache: 'no-store'});
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    setConn(false, 'gateway unreachable; retrying');
    throw new ApiError(0, null, `gateway unreachable (${e.message})`);
  }
  if (res.status !== 503) setConn(true);
  if (res.ok) return res;
  const text = await res.text();
  let problem = null;
  try { problem = JSON.parse(text); } catch (e) { problem = null; }
  if (problem && typeof problem !== 'object') problem = null;
  if (res.status === 401) askKey(problem ? problem.detail : 'the API asks for a key');
  if (res.status === 503) setConn(false, `gateway answers 503 (${(problem && problem.detail) || 'unavailable'}); retrying`);
  throw new ApiError(res.status, problem, text);
}

async function callJson(method, path, opts) {
  const res = await call(method, path, opts);
  return res.json();
}

let connOk = null;
function setConn(ok, why) {
  if (ok && connOk) return;
  connOk = ok;
  const el = $('conn');
  el.textContent = ok ? 'connected' : why || 'gateway unreachable';
  el.className = `conn ${ok ? 'ok' : 'bad'}`;
}

// ------------------------------------------------------------------ the key ----------

let keyWaiters = [];

function askKey(why) {
  const dlg = $('key-dialog');
  $('key-error').textContent = apiKey ? `The key was refused: ${why}` : '';
  if (!dlg.open) {
    if (typeof dlg.showModal === 'function') dlg.showModal(); else dlg.setAttribute('open', '');
    $('key-input').focus();
  }
}

function keyReady() {
  if (!$('key-dialog').open) return Promise.resolve();
  return new Promise((resolve) => keyWaiters.push(resolve));
}

function useKey(k) {
  apiKey = k;
  if (k) sessionStorage.setItem(KEY_STORE, k); else sessionStorage.removeItem(KEY_STORE);
}

async function whoAmI() {
  try {
    const st = await callJson('GET', '/v1/stats');
    isAdmin = !st.tenant;
    // An admin key lists every tenant's jobs (each with its tenant: a column and a filter
    // of their own) and has the fleet-wide counters (rates); a tenant key its own jobs.
    $('who').textContent = st.tenant ? `tenant ${st.tenant.name} (its own jobs)` :
      apiKey ? 'admin key (every tenant\'s jobs; fleet-wide counters)' :
        'no key needed (API keys are off: every job is one tenant\'s)';
    for (const el of document.querySelectorAll('.admin-only')) el.hidden = !isAdmin;
    if (st.models) lastStats = {at: performance.now(), models: st.models};
    whoKnown = true;
    return true;
  } catch (e) {
    $('who').textContent = '';
    return false;
  }
}

// ------------------------------------------------------------------ models -----------

let isAdmin = false;
let lastStats = null; // {at, models}: the previous /v1/stats counters, for rates
let knownModels = [];

// fleet_queue_oldest_age_seconds and the like from /metrics, when the gateway serves it
// (a gateway without it is asked again a minute later, not at every refresh).
let metricsNextTry = 0;
async function metricsByModel() {
  if (performance.now() < metricsNextTry) return null;
  let res;
  try {
    res = await fetch('/metrics', {cache: 'no-store'});
  } catch (e) { return null; }
  if (!res.ok) {
    if (res.status === 404) metricsNextTry = performance.now() + 60000;
    return null;
  }
  const out = {};
  const text = await res.text();
  const re = /^(fleet_[a-z_]+)\{([^}]*)\}\s+([-+0-9.eEInfa]+)\s*$/gm;
  let m;
  while ((m = re.exec(text))) {
    const model = /(?:^|,)model="([^"]*)"/.exec(m[2]);
    if (!model) continue;
    const state = /(?:^|,)state="([^"]*)"/.exec(m[2]);
    const o = out[model[1]] || (out[model[1]] = {});
    const key = m[1] + (state ? ':' + state[1] : '');
    // Series split by another label (fleet_jobs_finished_total's status) are summed.
    o[key] = (o[key] || 0) + Number(m[3]);
  }
  return out;
}

function numOr(...vals) {
  for (const v of vals) if (typeof v === 'number' && !Number.isNaN(v)) return v;
  return null;
}

let whoKnown = false;

async function refreshModels() {
  if (!whoKnown) await whoAmI();
  let list;
  try {
    list = (await callJson('GET', '/v1/models')).models || [];
  } catch (e) {
    $('models-note').textContent = e.message;
    return;
  }
  let stats = null;
  if (isAdmin) {
    try { stats = (await callJson('GET', '/v1/stats')).models || null; } catch (e) { stats = null; }
  }
  const metrics = await metricsByModel();
  const now = performance.now();
  // The counters the rates come from: /v1/stats for an admin key, else /metrics's
  // fleet-wide totals when the gateway serves them (it needs no key).
  if (!stats && metrics) {
    stats = {};
    for (const [name, mm] of Object.entries(metrics)) {
      if (typeof mm.fleet_jobs_submitted_total === 'number')
        stats[name] = {submitted: mm.fleet_jobs_submitted_total, finished: mm.fleet_jobs_finished_total || 0};
    }
  }
  const prev = lastStats;
  if (stats) lastStats = {at: now, models: stats};
  const body = $('models-body');
  clear(body);
  knownModels = list.map((m) => m.name).filter(Boolean);
  for (const m of list) {
    const mm = (metrics && metrics[m.name]) || {};
    const workers = numOr(m.workers, 0);
    const busy = numOr(m.busy_workers, mm['fleet_workers:busy']);
    const idle = numOr(m.idle_workers, mm['fleet_workers:idle'],
      busy === null ? null : workers - busy);
    const depth = numOr(m.queue_depth, mm.fleet_queue_depth);
    // An empty queue has no oldest job (a series may still say 0).
    const oldest = depth === 0 ? null :
      numOr(m.oldest_age_s, m.queue_oldest_age_s, mm.fleet_queue_oldest_age_seconds);
    let subRate = null, finRate = null;
    if (stats && prev && prev.models[m.name] && stats[m.name] && now > prev.at) {
      const dt = (now - prev.at) / 1000;
      const a = prev.models[m.name], b = stats[m.name];
      const fin = (c) => c.finished ?? (c.succeeded || 0) + (c.failed || 0) + (c.cancelled || 0);
      subRate = Math.max(0, ((b.submitted || 0) - (a.submitted || 0)) / dt);
      finRate = Math.max(0, (fin(b) - fin(a)) / dt);
    }
    const state = [];
    if (m.registered === false) state.push('not registered');
    if (m.accepts_jobs === false) state.push('refuses jobs');
    if (m.paused) state.push('paused');
    if (workers === 0) state.push('no worker');
    if (m.backend) state.push(m.backend);
    body.append(h('tr', {'data-model': m.name},
      h('th', {scope: 'row'}, m.name),
      h('td', {className: 'num'}, depth ?? '—'),
      h('td', {className: 'num'}, fmtAge(oldest)),
      h('td', {className: 'num'}, numOr(m.running) ?? '—'),
      h('td', {className: 'num'}, `${busy ?? '—'} / ${idle ?? '—'}`),
      h('td', {className: 'num'}, fmtRate(subRate)),
      h('td', {className: 'num'}, fmtRate(finRate)),
      h('td', {title: m.description || undefined}, state.join(', ') || 'ok')));
  }
  $('models-note').textContent = stats ? '' :
    'Rates need an admin key (the counters of /v1/stats) or a gateway that serves /metrics.';
  fillModelSelects();
}

function fillModelSelects() {
  for (const [id, blank] of [['f-model', 'any'], ['s-model', null]]) {
    const sel = $(id);
    const have = Array.from(sel.options).map((o) => o.value).filter(Boolean);
    if (have.join(',') === knownModels.join(',')) continue;
    const keep = sel.value;
    clear(sel);
    if (blank) sel.append(h('option', {value: ''}, blank));
    for (const n of knownModels) sel.append(h('option', {value: n}, n));
    if (keep && knownModels.includes(keep)) sel.value = keep;
    else if (!blank && knownModels.includes('sleep')) sel.value = 'sleep';
  }
}

// ------------------------------------------------------------------ job list ---------

let listed = []; // jobs shown, newest first
let nextCursor = null;
let listGen = 0; // a newer listing makes the answers of an older one stale

function filters() {
  const f = $('filters');
  const statuses = Array.from(f.querySelectorAll('input[name=status]:checked')).map((i) => i.value);
  return {
    statuses,
    dead: $('f-dead').checked,
    model: $('f-model').value,
    tenant: isAdmin ? $('f-tenant').value.trim() : '',
    since: Number($('f-since').value) || 0,
    q: $('f-search').value.trim(),
  };
}

// The time filter as the API's since= bound (RFC 3339), so that the gateway reads only the
// span asked for; a gateway without since= (400 naming it) is filtered here instead.
let sinceOk = true;

function sinceBound(f) {
  return f.since && sinceOk ? new Date(Date.now() - f.since * 1000).toISOString() : '';
}

// What the API filters (status, model) it is asked to; what it cannot (several statuses
// on a gateway without status lists, time, metadata, dead letters) is filtered here.
function keep(job, f) {
  if (f.statuses.length && !f.statuses.includes(job.status)) return false;
  if (f.dead && !job.dead_lettered) return false;
  if (f.model && job.model !== f.model) return false;
  if (f.tenant && job.tenant && job.tenant !== f.tenant) return false;
  if (f.since && Date.parse(job.created_at) < Date.now() - f.since * 1000) return false;
  if (f.q && !ID_RE.test(f.q)) {
    const hay = JSON.stringify(job.metadata || {}).toLowerCase();
    if (!hay.includes(f.q.toLowerCase())) return false;
  }
  return true;
}

let multiStatusOk = true; // false once the gateway refused status=a,b

function listPath(f, cursor) {
  const p = new URLSearchParams();
  p.set('limit', String(PAGE));
  let st = f.statuses;
  if (f.dead) st = ['failed'];
  if (st.length === 1 || (st.length > 1 && multiStatusOk)) p.set('status', st.join(','));
  if (f.model) p.set('model', f.model);
  if (f.tenant) p.set('tenant', f.tenant);
  if (f.sinceIso) p.set('since', f.sinceIso);
  if (cursor) p.set('cursor', cursor);
  return `/v1/jobs?${p}`;
}

// Fetches pages from cursor until PAGE jobs pass the filters, the time filter passes its
// limit, or the end. A search by id lists that job; when the user asked (shown), it opens
// too (the timed refreshes only redraw the list).
async function loadJobs(more, shown) {
  const gen = ++listGen;
  const f = filters();
  $('jobs-problem').textContent = '';
  if (f.q && ID_RE.test(f.q)) {
    try {
      const job = await callJson('GET', `/v1/jobs/${f.q}`);
      if (gen !== listGen) return;
      listed = [job];
      nextCursor = null;
      renderJobs();
      if (shown && detailId !== job.id) openDetail(job.id);
    } catch (e) {
      if (gen !== listGen) return;
      listed = [];
      renderJobs();
      $('jobs-problem').textContent = e.message;
    }
    return;
  }
  let cursor = more ? nextCursor : null;
  f.sinceIso = sinceBound(f);
  const got = more ? listed.slice() : [];
  const want = got.length + PAGE;
  let pages = 0;
  let tooOld = false;
  try {
    for (;;) {
      let page;
      try {
        page = await callJson('GET', listPath(f, cursor));
      } catch (e) {
        if (e.status === 400 && f.sinceIso && /since/.test(e.message)) {
          sinceOk = false; // an older gateway: no since=; the time filter runs here
          f.sinceIso = '';
          continue;
        }
        if (e.status === 400 && f.statuses.length > 1 && multiStatusOk) {
          multiStatusOk = false; // an older gateway: one status per query; filter here
          continue;
        }
        throw e;
      }
      if (gen !== listGen) return;
      for (const j of page.jobs || []) {
        if (f.since && Date.parse(j.created_at) < Date.now() - f.since * 1000) tooOld = true;
        if (keep(j, f)) got.push(j);
      }
      cursor = page.next_cursor || null;
      pages++;
      if (!cursor || tooOld || got.length >= want || pages >= MAX_PAGES) break;
    }
  } catch (e) {
    if (gen !== listGen) return;
    $('jobs-problem').textContent = e.message;
    return;
  }
  listed = got;
  nextCursor = tooOld ? null : cursor;
  renderJobs();
}

function progressCell(job) {
  const p = job.progress;
  if (!p || typeof p.percent !== 'number') return h('td', {}, job.status === 'queued' &&
    job.queue_position ? `#${job.queue_position} in queue` : '');
  return h('td', {}, h('progress', {max: 100, value: p.percent,
    'aria-label': `progress of ${job.id}`}), ` ${Math.round(p.percent)}%`);
}

function renderJobs() {
  const body = $('jobs-body');
  // The list is redrawn on every refresh: keep the keyboard focus on the same job.
  const focused = document.activeElement && body.contains(document.activeElement) ?
    document.activeElement.closest('tr[data-job]')?.getAttribute('data-job') : null;
  clear(body);
  for (const j of listed) {
    body.append(h('tr', {'data-job': j.id, className: j.id === detailId ? 'selected' : ''},
      h('td', {}, h('button', {type: 'button', className: 'link', onclick: () => openDetail(j.id),
        'aria-label': `open job ${j.id}`}, j.id)),
      h('td', {className: 'admin-only', hidden: !isAdmin}, j.tenant || ''),
      h('td', {}, j.model),
      h('td', {className: `status status-${j.status}`}, j.status + (j.dead_lettered ? ' (dead letter)' : '')),
      progressCell(j),
      h('td', {}, fmtTime(j.created_at))));
  }
  if (focused) {
    for (const tr of body.children)
      if (tr.getAttribute('data-job') === focused) { tr.querySelector('button').focus(); break; }
  }
  $('jobs-note').textContent = listed.length ? `${listed.length} job(s)` : 'No jobs match.';
  $('jobs-more').hidden = !nextCursor;
}

// ------------------------------------------------------------------ job detail -------

let detailId = null;
let detailJob = null;
let stream = null; // {abort: AbortController, id}

function field(dl, name, value) {
  if (value === undefined || value === null || value === '') return;
  dl.append(h('dt', {}, name), h('dd', {}, typeof value === 'object' ? JSON.stringify(value) : value));
}

function renderDetail(job) {
  detailJob = job;
  $('d-id').textContent = job.id;
  const dl = $('d-fields');
  clear(dl);
  field(dl, 'status', job.status + (job.cancel_requested ? ' (cancel requested)' : ''));
  field(dl, 'model', job.model);
  field(dl, 'tenant', job.tenant);
  field(dl, 'priority', job.priority);
  field(dl, 'queue position', job.queue_position);
  field(dl, 'attempts', job.max_attempts ? `${job.attempts || 0} of ${job.max_attempts}` : job.attempts);
  field(dl, 'submitted', fmtTime(job.created_at));
  field(dl, 'started', fmtTime(job.started_at));
  field(dl, 'finished', fmtTime(job.finished_at));
  field(dl, 'retry at', fmtTime(job.retry_at));
  field(dl, 'worker', job.worker);
  field(dl, 'timeout', job.timeout_s ? `${job.timeout_s} s` : undefined);
  field(dl, 'kept after finishing', job.ttl_s ? fmtAge(job.ttl_s) : undefined);
  field(dl, 'dead-lettered', job.dead_lettered ? 'yes' : undefined);
  field(dl, 'metadata', job.metadata);
  const p = job.progress || {};
  const pct = typeof p.percent === 'number' ? p.percent : (job.status === 'succeeded' ? 100 : 0);
  $('d-progress').value = pct;
  $('d-percent').textContent = `${Math.round(pct * 10) / 10}%` +
    (typeof p.done === 'number' && typeof p.total === 'number' ? ` (${p.done} of ${p.total})` : '');
  $('d-message').textContent = p.message || '';
  const errs = [];
  if (job.error) errs.push(`error: ${job.error}`);
  if (job.last_error) errs.push(`last error: ${job.last_error}`);
  $('d-error').textContent = errs.join('\n');
  const w = job.webhook;
  $('d-webhook').textContent = w ? [
    `${w.url} (${(w.events || []).join(', ')})`,
    `delivery: ${w.state || 'none'}`,
    w.attempts ? `${w.attempts} attempt(s)` : '',
    w.last_status !== undefined ? `last answer ${w.last_status}` : '',
    w.last_error ? `last error: ${w.last_error}` : '',
  ].filter(Boolean).join('; ') : 'none';
  const fin = FINAL.has(job.status);
  $('d-cancel').disabled = fin;
  $('d-retry').disabled = !fin || job.status === 'succeeded';
  $('d-delete').disabled = !fin;
  $('d-result-btn').disabled = job.status !== 'succeeded';
  // The list shows the same job: keep its row in step.
  const i = listed.findIndex((j) => j.id === job.id);
  if (i >= 0) { listed[i] = job; renderJobs(); }
}

function logEvent(kind, job) {
  const p = job && job.progress;
  const line = `${new Date().toLocaleTimeString()} ${kind}` +
    (job ? ` ${job.status}${p && typeof p.percent === 'number' ? ' ' + Math.round(p.percent) + '%' : ''}` +
      `${p && p.message ? ' ' + p.message : ''}` : '');
  const ol = $('d-events');
  ol.append(h('li', {}, line));
  while (ol.children.length > 500) ol.removeChild(ol.firstChild);
  ol.scrollTop = ol.scrollHeight;
}

function setLive(text, ok) {
  const el = $('d-live');
  el.textContent = text;
  el.className = `conn ${ok ? 'ok' : ok === false ? 'bad' : ''}`;
}

function stopStream() {
  if (stream) stream.abort.abort();
  stream = null;
}

async function openDetail(id) {
  stopStream();
  // The answer of an action on this job (a retry follows it again) stays in view.
  if (id !== detailId) $('d-action').textContent = '';
  detailId = id;
  detailJob = null;
  $('detail').hidden = false;
  $('d-id').textContent = id;
  clear($('d-fields'));
  clear($('d-events'));
  $('d-error').textContent = '';
  clear($('d-result'));
  $('d-result').append(h('p', {className: 'note'}, 'Not loaded.'));
  renderJobs();
  follow(id);
}

// Follows the job's event stream with fetch (EventSource cannot send the Authorization
// header) and reconnects when it drops before the job ended: a gateway that restarts ends
// its streams, and the next connection starts again with the job as it is.
async function follow(id) {
  const me = {abort: new AbortController(), id};
  stream = me;
  let delay = 1000;
  while (stream === me) {
    let ended = false;
    try {
      setLive('connecting to the event stream…');
      const res = await call('GET', `/v1/jobs/${id}/events`,
        {headers: {Accept: 'text/event-stream'}, signal: me.abort.signal});
      setLive('live', true);
      delay = 1000;
      ended = await readEvents(res, me, (kind, job, retry) => {
        if (retry) delay = retry;
        if (!job) return;
        logEvent(kind, job);
        renderDetail(job);
      });
    } catch (e) {
      if (e.name === 'AbortError' || stream !== me) return;
      if (e.status && e.status !== 503) { // the job is gone, or the key was refused
        setLive(e.message, false);
        if (e.status === 401) { await keyReady(); continue; }
        return;
      }
    }
    if (stream !== me) return;
    if (ended) { setLive('finished (the stream has ended)'); return; }
    setLive(`stream lost; reconnecting in ${Math.round(delay / 1000)} s`, false);
    logEvent('stream lost, reconnecting');
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

// Reads Server-Sent Events from a fetch Response until it closes. Returns true when a
// "final" event came (the job ended), false when the stream stopped without one.
async function readEvents(res, me, onEvent) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let final = false;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return final;
    if (stream !== me) { reader.cancel(); return final; }
    buf += dec.decode(value, {stream: true});
    let cut;
    while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
      let kind = 'message', data = '', retry = 0;
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const name = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (name === 'event') kind = val;
        else if (name === 'data') data += (data ? '\n' : '') + val;
        else if (name === 'retry' && /^\d+$/.test(val)) retry = Number(val);
      }
      let job = null;
      if (data) { try { job = JSON.parse(data); } catch (e) { job = null; } }
      if (kind === 'final') final = true;
      onEvent(kind, job, retry);
    }
  }
}

async function action(label, method, path, after) {
  const out = $('d-action');
  out.textContent = `${label}…`;
  try {
    const res = await call(method, path);
    let job = null;
    try { job = await res.json(); } catch (e) { job = null; }
    out.textContent = `${label}: ${res.status}${job && job.status ? ', ' + job.status : ''}`;
    if (after) after(job);
  } catch (e) {
    out.textContent = `${label}: ${e.message}`;
  }
  loadJobs(false);
}

async function showResult() {
  const box = $('d-result');
  clear(box);
  const id = detailId;
  try {
    const res = await call('GET', `/v1/jobs/${id}/result`);
    const type = res.headers.get('Content-Type') || 'application/octet-stream';
    const blob = await res.blob();
    let name = `${id}.json`;
    const disp = /filename="?([^";]+)"?/.exec(res.headers.get('Content-Disposition') || '');
    if (disp) name = disp[1];
    else if (!type.startsWith('application/json')) name = `${id}.bin`;
    const url = URL.createObjectURL(blob);
    box.append(h('p', {}, `${type}, ${blob.size} bytes `,
      h('a', {href: url, download: name}, `download ${name}`)));
    if (type.startsWith('application/json') || type.startsWith('text/')) {
      let text = await blob.text();
      if (type.startsWith('application/json')) {
        try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* as sent */ }
      }
      if (text.length > RESULT_SHOWN_MAX) text = text.slice(0, RESULT_SHOWN_MAX) + '\n… (download for the rest)';
      box.append(h('pre', {'aria-label': 'result'}, text));
    }
  } catch (e) {
    box.append(h('p', {className: 'problem'}, e.message));
  }
}

// ------------------------------------------------------------------ submit -----------

async function submit(ev) {
  ev.preventDefault();
  const out = $('s-answer');
  let input, metadata;
  try {
    input = JSON.parse($('s-input').value || '{}');
  } catch (e) { out.textContent = `Input is not JSON: ${e.message}`; return; }
  const metaText = $('s-metadata').value.trim();
  if (metaText) {
    try { metadata = JSON.parse(metaText); } catch (e) { out.textContent = `Metadata is not JSON: ${e.message}`; return; }
  }
  const model = $('s-model').value;
  const priority = $('s-priority').value;
  const files = $('s-files').files;
  let body, headers;
  if (files && files.length) {
    body = new FormData();
    body.append('model', model);
    body.append('input', JSON.stringify(input));
    const options = {priority};
    if (metadata) options.metadata = metadata;
    body.append('options', JSON.stringify(options));
    for (const f of files) body.append('files', f, f.name);
  } else {
    const o = {model, input, priority};
    if (metadata) o.metadata = metadata;
    body = JSON.stringify(o);
    headers = {'Content-Type': 'application/json'};
  }
  out.textContent = 'Submitting…';
  try {
    const job = await callJson('POST', '/v1/jobs', {body, headers});
    out.textContent = `Accepted: ${job.id} (${job.status})` + (job.notice ? `. ${job.notice}` : '');
    await loadJobs(false);
    openDetail(job.id);
  } catch (e) {
    out.textContent = e.message;
  }
}

// ------------------------------------------------------------------ dead letters -----

async function loadDlq() {
  const body = $('dlq-body');
  $('dlq-problem').textContent = '';
  const got = [];
  let cursor = null, pages = 0;
  try {
    do {
      const p = new URLSearchParams({status: 'failed', limit: '100'});
      if (cursor) p.set('cursor', cursor);
      const page = await callJson('GET', `/v1/jobs?${p}`);
      for (const j of page.jobs || []) if (j.dead_lettered) got.push(j);
      cursor = page.next_cursor || null;
    } while (cursor && ++pages < 10);
  } catch (e) {
    $('dlq-problem').textContent = e.message;
    return;
  }
  clear(body);
  for (const j of got) {
    body.append(h('tr', {'data-job': j.id},
      h('td', {}, h('button', {type: 'button', className: 'link', onclick: () => openDetail(j.id)}, j.id)),
      h('td', {}, j.model),
      h('td', {}, j.error || ''),
      h('td', {}, fmtTime(j.finished_at)),
      h('td', {}, h('button', {type: 'button', 'aria-label': `retry job ${j.id}`,
        onclick: () => { openDetail(j.id); action('Retry', 'POST', `/v1/jobs/${j.id}/retry`, () => loadDlq()); }},
      'Retry'))));
  }
  if (!got.length) body.append(h('tr', {}, h('td', {colspan: 5}, 'No dead letters.')));
}

// ------------------------------------------------------------------ start ------------

// Polls with a timer that keeps going whatever happens, so the page comes back by itself
// after the gateway restarts or the network drops.
function every(ms, fn) {
  const tick = async () => {
    try { if (!$('key-dialog').open && !document.hidden) await fn(); } catch (e) { /* shown by fn */ }
    setTimeout(tick, ms);
  };
  setTimeout(tick, ms);
}

async function start() {
  $('key-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const k = $('key-input').value.trim();
    if (!k) return;
    useKey(k);
    $('key-dialog').close();
    if (!(await whoAmI())) return; // refused: the dialog is open again
    $('key-input').value = '';
    const w = keyWaiters;
    keyWaiters = [];
    w.forEach((f) => f());
    refreshAll();
  });
  $('key-change').addEventListener('click', () => askKey(''));
  $('key-forget').addEventListener('click', () => { useKey(''); location.reload(); });
  $('filters').addEventListener('submit', (ev) => { ev.preventDefault(); loadJobs(false, true); });
  $('jobs-more').addEventListener('click', () => loadJobs(true));
  $('submit-form').addEventListener('submit', submit);
  $('dlq-refresh').addEventListener('click', loadDlq);
  $('d-close').addEventListener('click', () => { stopStream(); detailId = null; $('detail').hidden = true; renderJobs(); });
  $('d-cancel').addEventListener('click', () => action('Cancel', 'DELETE', `/v1/jobs/${detailId}`));
  $('d-retry').addEventListener('click', () => {
    const id = detailId;
    action('Retry', 'POST', `/v1/jobs/${id}/retry`, () => { if (detailId === id) openDetail(id); });
  });
  // A finished job and its result are deleted with ?purge=true (plain DELETE cancels).
  $('d-delete').addEventListener('click', () => {
    const id = detailId;
    if (!detailJob || !FINAL.has(detailJob.status)) return;
    action('Delete', 'DELETE', `/v1/jobs/${id}?purge=true`, () => {
      if (detailId !== id) return;
      stopStream();
      setLive('deleted');
      for (const b of ['d-cancel', 'd-retry', 'd-delete', 'd-result-btn']) $(b).disabled = true;
    });
  });
  $('d-result-btn').addEventListener('click', showResult);
  if (await whoAmI()) refreshAll();
  every(MODELS_EVERY_MS, refreshModels);
  every(JOBS_EVERY_MS, async () => { if (!nextCursor || listed.length <= PAGE) await loadJobs(false); });
}

function refreshAll() {
  refreshModels();
  loadJobs(false);
  loadDlq();
}

document.addEventListener('DOMContentLoaded', start);
