// openapi_test.mjs: gateway/openapi.json describes the gateway as built, so it cannot drift.
//
//   node openapi_test.mjs BIN_DIR SOURCE_DIR      (tests/openapi/run.sh; ctest's openapi_test)
//
// Static checks (the repository's files):
//   - the document is valid OpenAPI 3.1 (@apidevtools/swagger-parser);
//   - its operations are exactly the routes of gateway/routes.c's table (method and path);
//   - its problem types are exactly gateway/problems.h's table (slug, status, title);
//   - each /v1 operation's query parameters are exactly those gateway/query.c's table
//     gives the route (the router refuses any other);
//   - every header gateway/*.c sets by name (gw_add_header) shows on some answer;
//   - a submit's fields are exactly gateway/job_body.c's FIELD_LIST.
// Live checks: a redis-server, a fleet-gateway (API keys on) and an echo worker on free
// loopback ports; the answers of the main routes (submit 202 and 200 with Prefer: wait,
// get, list, result, events, cancel, retry, purge, batch, models, pause, resume and purge a
// model, stats for an admin and a
// tenant, health, metrics, problems 400 / 401 / 404 / 405 / 409 / 415 / 422 / 425) are checked
// against the document: the status is one it lists for the operation, every header it
// marks required is there and matches its schema, and the body matches the schema of its
// content type (ajv, JSON Schema 2020-12). Exits 0 when all pass, 1 otherwise.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const [binDir, srcDir] = process.argv.slice(2);
if (!binDir || !srcDir) {
  console.error('usage: node openapi_test.mjs BIN_DIR SOURCE_DIR');
  process.exit(2);
}

let failures = 0;
let checks = 0;
function fail(msg) {
  failures++;
  console.log(`  FAIL ${msg}`);
}
function check(cond, msg) {
  checks++;
  if (!cond) fail(msg);
  return cond;
}

const specPath = path.join(srcDir, 'gateway/openapi.json');
const specText = readFileSync(specPath, 'utf8');
const raw = JSON.parse(specText);
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

// ------------------------------------------------------------ the document ----------

async function checkValid() {
  try {
    await SwaggerParser.validate(structuredClone(raw));
    check(raw.openapi.startsWith('3.1.'), `openapi is ${raw.openapi}, not 3.1.x`);
  } catch (e) {
    fail(`gateway/openapi.json is not valid OpenAPI: ${e.message}`);
  }
}

// The routes of gateway/routes.c's table: "METHOD path" (job routes carry their template).
function tableRoutes() {
  const c = readFileSync(path.join(srcDir, 'gateway/routes.c'), 'utf8');
  const start = c.indexOf('static const route routes[] = {');
  check(start >= 0, 'gateway/routes.c: no route table');
  const body = c.slice(start, c.indexOf('};', start));
  const out = [];
  for (const line of body.split('\n')) {
    const m = line.match(/^\s*\{htp_method_(\w+),\s*R_\w+,\s*("([^"]*)"|NULL)/);
    if (!m) continue;
    if (!m[3]) {
      fail(`gateway/routes.c: a route without its path template: ${line.trim()}`);
      continue;
    }
    out.push(`${m[1]} ${m[3]}`);
  }
  check(out.length >= 10, `gateway/routes.c: only ${out.length} routes read`);
  return out;
}

function specOperations(doc) {
  const out = [];
  for (const [p, item] of Object.entries(doc.paths))
    for (const m of METHODS) if (item[m]) out.push(`${m.toUpperCase()} ${p}`);
  return out;
}

function checkRoutes() {
  const table = tableRoutes();
  const ops = specOperations(raw);
  for (const r of table)
    check(ops.includes(r), `gateway/routes.c has ${r}, which gateway/openapi.json does not describe`);
  for (const o of ops)
    check(table.includes(o), `gateway/openapi.json describes ${o}, which gateway/routes.c does not route`);
}

function checkProblems() {
  const h = readFileSync(path.join(srcDir, 'gateway/problems.h'), 'utf8');
  const rows = [...h.matchAll(/X\(\w+,\s*"([a-z-]+)",\s*(\d+),\s*\\?\s*"([^"]+)"\)/g)].map(
    (m) => `${m[1]} ${m[2]} ${m[3]}`);
  check(rows.length > 30, `gateway/problems.h: only ${rows.length} problem types read`);
  const inSpec = (raw.components.schemas.Problem.oneOf || []).map((t) => {
    const p = t.properties || {};
    const slug = String(p.type?.const || '').replace('urn:fleet:problem:', '');
    return `${slug} ${p.status?.const} ${p.title?.const}`;
  });
  for (const r of rows)
    check(inSpec.includes(r), `problem type "${r}" of gateway/problems.h is not in components.schemas.Problem`);
  for (const r of inSpec)
    check(rows.includes(r), `components.schemas.Problem has "${r}", which gateway/problems.h lacks`);
  // Each status's schema (Problem400, ...) lists that status's types, and every status has one.
  const byStatus = {};
  for (const r of rows) {
    const [slug, st] = r.split(' ');
    (byStatus[st] ||= []).push(`urn:fleet:problem:${slug}`);
  }
  for (const [st, types] of Object.entries(byStatus)) {
    const s = raw.components.schemas[`Problem${st}`];
    if (!check(s, `components.schemas.Problem${st} is missing`)) continue;
    check(JSON.stringify([...(s.properties?.type?.enum || [])].sort()) === JSON.stringify(types.sort()),
          `components.schemas.Problem${st}'s types are not those of status ${st} in gateway/problems.h`);
  }
}

// A submit's fields in the document are exactly gateway/job_body.c's (FIELD_LIST, the list
// its refusal of an unknown field names), and a form's options name the others.
function checkSubmitFields() {
  const c = readFileSync(path.join(srcDir, 'gateway/job_body.c'), 'utf8');
  const m = c.match(/#define FIELD_LIST((?:[^\n]*\\\n)*[^\n]*)/);
  if (!check(m, 'gateway/job_body.c: no FIELD_LIST')) return;
  const fields = [...m[1].matchAll(/"([^"]*)"/g)].map((x) => x[1]).join('').split(',')
    .map((x) => x.trim()).filter(Boolean).sort();
  const inSpec = Object.keys(raw.components.schemas.SubmitRequest.properties).sort();
  check(JSON.stringify(fields) === JSON.stringify(inSpec),
        `SubmitRequest has ${JSON.stringify(inSpec)}, gateway/job_body.c's FIELD_LIST ${JSON.stringify(fields)}`);
  const options = raw.components.schemas.SubmitMultipart.properties.options.description;
  for (const f of fields.filter((x) => x !== 'model' && x !== 'input'))
    check(options.includes(f), `SubmitMultipart's options do not name ${f}`);
}

// Every header the gateway's sources set by name (gw_add_header with a literal) is one the
// document shows on some answer, but for the framing ones every HTTP answer has.
function checkHeaders(doc) {
  const framing = ['content-type', 'content-length', 'connection'];
  const documented = new Set();
  for (const item of Object.values(doc.paths))
    for (const m of METHODS)
      for (const r of Object.values(item[m]?.responses || {}))
        for (const h of Object.keys(r.headers || {})) documented.add(h.toLowerCase());
  const dir = path.join(srcDir, 'gateway');
  let n = 0;
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.c'))) {
    const c = readFileSync(path.join(dir, f), 'utf8');
    for (const m of c.matchAll(/gw_add_header\([^,]+,\s*"([^"]+)"/g)) {
      n++;
      const h = m[1].toLowerCase();
      if (!framing.includes(h))
        check(documented.has(h), `gateway/${f} sets the header ${m[1]}, which no answer in the document shows`);
    }
  }
  check(n >= 10, `gateway/*.c: only ${n} headers read`);
}

function checkQueries(doc) {
  const c = readFileSync(path.join(srcDir, 'gateway/query.c'), 'utf8');
  const start = c.indexOf('route_params[] = {');
  check(start >= 0, 'gateway/query.c: no route_params table');
  const body = c.slice(start, c.indexOf('};', start));
  const table = {};
  for (const m of body.matchAll(/\{"(\w+)",\s*"([^"]+)",\s*"([^"]*)"\}/g))
    table[`${m[1]} ${m[2]}`] = m[3].split(',').filter(Boolean).sort();
  check(Object.keys(table).length >= 3, 'gateway/query.c: route_params read no rows');
  for (const [p, item] of Object.entries(doc.paths)) {
    if (!p.startsWith('/v1/')) continue;
    for (const m of METHODS) {
      if (!item[m]) continue;
      const params = [...(item.parameters || []), ...(item[m].parameters || [])];
      const q = params.filter((x) => x.in === 'query').map((x) => x.name).sort();
      const want = table[`${m.toUpperCase()} ${p}`] || [];
      check(JSON.stringify(q) === JSON.stringify(want),
            `${m.toUpperCase()} ${p}: query parameters ${JSON.stringify(q)} in the document, ` +
            `${JSON.stringify(want)} in gateway/query.c`);
    }
  }
}

// ------------------------------------------------------------ live answers ----------

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const compiled = new Map();
// Each error with where it is and its parameters (the property that is not allowed, ...).
function errorsOf(v) {
  return (v.errors || []).slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`).join('; ');
}
function validator(schema) {
  if (!compiled.has(schema)) compiled.set(schema, ajv.compile(schema));
  return compiled.get(schema);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const procs = [];
function start(name, cmd, args, env, logDir) {
  const logPath = path.join(logDir, `${name}.log`);
  const chunks = [];
  const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  p.stdout.on('data', (d) => chunks.push(d));
  p.stderr.on('data', (d) => chunks.push(d));
  const rec = { name, p, logPath, log: () => Buffer.concat(chunks).toString(), exited: null };
  p.on('exit', (code, sig) => { rec.exited = { code, sig }; });
  procs.push(rec);
  return rec;
}

async function stopAll() {
  for (const r of procs.slice().reverse()) {
    if (r.exited) continue;
    r.p.kill('SIGTERM');
    const t0 = Date.now();
    while (!r.exited && Date.now() - t0 < 10000) await sleep(50);
    if (!r.exited) {
      r.p.kill('SIGKILL');
      fail(`${r.name} needed SIGKILL to stop`);
    }
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, ms = 20000) {
  const t0 = Date.now();
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch { /* not yet */ }
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function run(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env } });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${out}`))));
  });
}

let doc; // dereferenced
let base;

// The operation a concrete path answers to: the document's template that matches it.
function templateOf(p) {
  if (doc.paths[p]) return p;
  for (const t of Object.keys(doc.paths)) {
    const re = new RegExp('^' + t.replace(/\{[^}]+\}/g, '[^/]+') + '$');
    if (re.test(p)) return t;
  }
  return null;
}

// Sends a request and checks its answer against the document. Returns {status, headers, text, json}.
async function call(method, p, { key, headers = {}, body, expect } = {}) {
  const h = { ...headers };
  if (key) h.Authorization = `Bearer ${key}`;
  const res = await fetch(base + p, { method, headers: h, body });
  const text = method === 'HEAD' ? '' : Buffer.from(await res.arrayBuffer()).toString('latin1');
  const label = `${method} ${p} -> ${res.status}`;
  if (expect !== undefined) check(res.status === expect, `${label}: expected ${expect}: ${text.slice(0, 300)}`);
  const tpl = templateOf(p.split('?')[0]);
  let op = tpl && doc.paths[tpl][method.toLowerCase()];
  let json = null;
  if (tpl && !op && res.status === 405) {
    // A method the path does not take has no operation: its answer is the document's
    // MethodNotAllowed, and Allow lists exactly the path's operations.
    const allowed = METHODS.filter((m) => doc.paths[tpl][m]).map((m) => m.toUpperCase());
    const allow = (res.headers.get('allow') || '').split(',').map((x) => x.trim()).filter(Boolean);
    check(JSON.stringify(allow.sort()) === JSON.stringify(allowed.sort()),
          `${label}: Allow is ${JSON.stringify(allow)}, the document has ${JSON.stringify(allowed)}`);
    op = { responses: { 405: doc.components.responses.MethodNotAllowed } };
  }
  if (!check(op, `${label}: no operation in the document`)) return { status: res.status, headers: res.headers, text, json };
  const resp = op.responses[String(res.status)];
  if (!check(resp, `${label}: status ${res.status} is not among the operation's responses (${Object.keys(op.responses)})`))
    return { status: res.status, headers: res.headers, text, json };
  for (const [name, hd] of Object.entries(resp.headers || {})) {
    const v = res.headers.get(name);
    if (hd.required) check(v !== null, `${label}: required header ${name} missing`);
    if (v !== null && hd.schema) {
      const ok = validator(hd.schema)(v);
      check(ok, `${label}: header ${name}: ${JSON.stringify(v)} does not match its schema: ${errorsOf(validator(hd.schema))}`);
    }
  }
  const ctype = (res.headers.get('content-type') || '').split(';')[0].trim();
  if (!resp.content) {
    check(text.length === 0, `${label}: a body where the document has none`);
    return { status: res.status, headers: res.headers, text, json };
  }
  const media = resp.content[ctype] || resp.content['*/*'];
  if (!check(media, `${label}: content type ${ctype} not among ${Object.keys(resp.content)}`))
    return { status: res.status, headers: res.headers, text, json };
  if (ctype === 'application/json' || ctype === 'application/problem+json') {
    const utf8 = Buffer.from(text, 'latin1').toString('utf8');
    try {
      json = JSON.parse(utf8);
    } catch (e) {
      fail(`${label}: body is not JSON: ${e.message}`);
      return { status: res.status, headers: res.headers, text, json };
    }
    if (media.schema) {
      const v = validator(media.schema);
      check(v(json), `${label}: body does not match the schema: ${errorsOf(v)}: ${utf8.slice(0, 400)}`);
    }
    if (ctype === 'application/problem+json')
      check(json.request_id === res.headers.get('x-request-id'), `${label}: problem request_id differs from X-Request-ID`);
  } else if (ctype === 'text/event-stream') {
    // Each event's data is the job object (the operation's description says so).
    const events = text.split('\n\n').filter((e) => e.includes('data: '));
    check(events.length >= 1, `${label}: no events`);
    const v = validator(doc.components.schemas.Job);
    for (const e of events) {
      const data = e.split('\n').find((l) => l.startsWith('data: ')).slice(6);
      check(v(JSON.parse(data)), `${label}: event data does not match Job: ${errorsOf(v)}`);
    }
  }
  return { status: res.status, headers: res.headers, text, json };
}

function msgpackJob(model, inputInt) {
  // {"model": model, "input": inputInt}: a fixmap of 2, fixstrs, a positive fixint
  const str = (s) => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);
  return Buffer.concat([Buffer.from([0x82]), str('model'), str(model), str('input'), Buffer.from([inputInt])]);
}

async function live() {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'fleet-openapi-'));
  try {
    const rport = await freePort();
    const gport = await freePort();
    const redis = start('redis-server', process.env.FLEET_TEST_REDIS_SERVER || 'redis-server',
      ['--port', String(rport), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp], {}, tmp);
    const url = `redis://127.0.0.1:${rport}`;
    await waitFor('redis-server', async () => {
      await run(process.env.FLEET_TEST_REDIS_CLI || 'redis-cli', ['-p', String(rport), 'PING']);
      return true;
    });
    const env = { FLEET_REDIS_URL: url, FLEET_PREFIX: 'openapi' };
    const fleetctl = path.join(binDir, 'fleetctl');
    const keyOf = (out) => out.match(/api key:\s+(\S+)/)[1];
    const admin = keyOf(await run(fleetctl, ['tenant', 'add', 'ops', '--admin'], env));
    const acme = keyOf(await run(fleetctl, ['tenant', 'add', 'acme'], env));
    const gw = start('fleet-gateway', path.join(binDir, 'fleet-gateway'), [],
      { ...env, FLEET_LISTEN: `127.0.0.1:${gport}`, FLEET_AUTH: 'on', FLEET_MODELS: 'echo,sleep' }, tmp);
    base = `http://127.0.0.1:${gport}`;
    await waitFor('the gateway', async () => (await fetch(`${base}/readyz`)).status === 200);
    start('fleet-worker', path.join(binDir, 'fleet-worker'), ['--model', 'echo'],
      { ...env, FLEET_MAX_DELAY_MS: '0', FLEET_DRAIN_TIMEOUT: '2' }, tmp);

    const JSONCT = { 'Content-Type': 'application/json' };
    // health, and the document itself
    await call('GET', '/healthz', { expect: 200 });
    await call('GET', '/readyz', { expect: 200 });
    const oa = await call('GET', '/openapi.json', { expect: 200 });
    check(oa.text === specText, 'GET /openapi.json is not gateway/openapi.json byte for byte');
    await call('GET', '/openapi.json', { headers: { 'If-None-Match': oa.headers.get('etag') }, expect: 304 });
    await call('GET', '/', { expect: 200 });
    const metrics = await call('GET', '/metrics', { expect: 200 });
    check(/^fleet_redis_up 1$/m.test(metrics.text), '/metrics lacks fleet_redis_up 1');

    // submit, get, result, events, list
    const sub = await call('POST', '/v1/jobs', { key: acme, headers: JSONCT, expect: 202,
      body: JSON.stringify({ model: 'echo', input: { hello: 'world' }, metadata: { k: 'v' } }) });
    const id = sub.json?.id;
    check(sub.headers.get('location') === `/v1/jobs/${id}`, 'submit: Location is not /v1/jobs/{id}');
    await call('GET', `/v1/jobs/${id}`, { key: acme, expect: 200 });
    await waitFor('the echo job to succeed', async () => {
      const r = await fetch(`${base}/v1/jobs/${id}`, { headers: { Authorization: `Bearer ${acme}` } });
      return (await r.json()).status === 'succeeded';
    });
    const got = await call('GET', `/v1/jobs/${id}`, { key: acme, expect: 200 });
    check(got.json?.started_at && got.json?.finished_at && got.json?.worker, 'a finished job lacks started_at, finished_at or worker');
    const result = await call('GET', `/v1/jobs/${id}/result`, { key: acme, expect: 200 });
    check(result.json?.hello === 'world', 'result is not the echoed input');
    await call('GET', `/v1/jobs/${id}/events`, { key: acme, expect: 200 });
    const waited = await call('POST', '/v1/jobs', { key: acme, headers: { ...JSONCT, Prefer: 'wait=20' }, expect: 200,
      body: JSON.stringify({ model: 'echo', input: [1, 2] }) });
    check(JSON.stringify(waited.json?.result) === '[1,2]', 'Prefer: wait answer lacks its result');
    await call('POST', '/v1/jobs?wait=0', { key: acme, headers: { 'Content-Type': 'application/msgpack' },
      body: msgpackJob('echo', 7), expect: 202 });
    const form = new FormData();
    form.append('model', 'echo');
    form.append('input', '{"lang": "fr"}');
    form.append('files', new Blob(['hello']), 'a.txt');
    await call('POST', '/v1/jobs', { key: acme, body: form, expect: 202 });
    const idem = { ...JSONCT, 'Idempotency-Key': 'openapi-test-1' };
    await call('POST', '/v1/jobs', { key: acme, headers: idem, body: '{"model": "echo", "input": 3}', expect: 202 });
    const replay = await call('POST', '/v1/jobs', { key: acme, headers: idem, body: '{"model": "echo", "input": 3}', expect: 202 });
    check(replay.headers.get('idempotent-replayed') === 'true', 'a replay lacks Idempotent-Replayed: true');
    const list = await call('GET', '/v1/jobs?status=succeeded&model=echo&limit=2', { key: acme, expect: 200 });
    check(list.json?.jobs?.length === 2, 'list: limit=2 did not give 2 jobs');
    await call('GET', `/v1/jobs?cursor=${encodeURIComponent(list.json?.next_cursor || '')}`, { key: acme, expect: 200 });
    await call('GET', '/v1/jobs', { key: admin, expect: 200 });
    const several = await call('GET', '/v1/jobs?status=queued,running,succeeded&limit=100', { key: acme, expect: 200 });
    check(several.json?.jobs?.length >= 2, 'list of several statuses: fewer than 2 jobs');

    // a job no worker takes: 425, cancel 200, cancel again 409, retry 202, purge 409 then 200, 404
    const q = await call('POST', '/v1/jobs', { key: acme, headers: JSONCT, expect: 202,
      body: '{"model": "sleep", "input": {"ms": 1}, "priority": "low", "max_attempts": 2, "queue_ttl_s": 600}' });
    const qid = q.json?.id;
    check(q.json?.queue_position === 1 && q.json?.max_attempts === 2, 'a queued job lacks queue_position 1 or its max_attempts');
    const queued = await call('GET', '/v1/jobs?status=queued', { key: acme, expect: 200 });
    check(queued.json?.jobs?.[0]?.queue_position === 1, 'a queued job in the list lacks queue_position 1');
    await call('GET', `/v1/jobs/${qid}/result`, { key: acme, expect: 425 });
    await call('DELETE', `/v1/jobs/${qid}?purge=true`, { key: acme, expect: 409 });
    await call('DELETE', `/v1/jobs/${qid}`, { key: acme, expect: 200 });
    await call('DELETE', `/v1/jobs/${qid}`, { key: acme, expect: 409 });
    await call('GET', `/v1/jobs/${qid}/result`, { key: acme, expect: 409 });
    await call('GET', `/v1/jobs/${qid}/events`, { key: acme, expect: 200 });
    await call('POST', `/v1/jobs/${qid}/retry`, { key: acme, expect: 202 });
    await call('POST', `/v1/jobs/${qid}/retry`, { key: acme, expect: 409 });
    await call('DELETE', `/v1/jobs/${qid}`, { key: acme, expect: 200 });
    const del = await call('DELETE', `/v1/jobs/${qid}?purge=true`, { key: acme, expect: 200 });
    check(del.json?.deleted === true, 'purge answer lacks deleted: true');
    await call('GET', `/v1/jobs/${qid}`, { key: acme, expect: 404 });

    // batch
    const batch = await call('POST', '/v1/jobs/batch', { key: acme, headers: JSONCT, expect: 200,
      body: JSON.stringify({ jobs: [{ model: 'echo', input: 1 }, { model: 'nope', input: 2 }] }) });
    check(batch.json?.accepted === 1 && batch.json?.refused === 1, 'batch: not 1 accepted and 1 refused');

    // models and stats, for an admin and for a tenant
    await call('GET', '/v1/models', { key: acme, expect: 200 });
    const st = await call('GET', '/v1/stats', { key: admin, expect: 200 });
    check(st.json?.models?.echo?.submitted >= 1, 'admin stats lack models.echo.submitted');
    const ts = await call('GET', '/v1/stats', { key: acme, expect: 200 });
    check(ts.json?.tenant?.name === 'acme', 'tenant stats are not acme\'s');

    // steering a model (an admin key): pause, resume, purge; a tenant key is refused
    const paused = await call('POST', '/v1/models/echo/pause', { key: admin, expect: 200 });
    check(paused.json?.paused === true, 'pause: paused is not true');
    const models = await call('GET', '/v1/models', { key: admin, expect: 200 });
    check(models.json?.models?.find((m) => m.name === 'echo')?.paused === true, '/v1/models does not show echo paused');
    await call('POST', '/v1/models/echo/resume', { key: admin, expect: 200 });
    await call('POST', '/v1/models/echo/pause', { key: acme, expect: 403 });
    await call('POST', '/v1/models/no-such-model/pause', { key: admin, expect: 404 });
    await call('POST', '/v1/jobs', { key: acme, headers: JSONCT, body: '{"model": "sleep", "input": 1}', expect: 202 });
    const purged = await call('POST', '/v1/models/sleep/purge', { key: admin, expect: 200 });
    check(purged.json?.cancelled === 1, 'purge: not 1 job cancelled');
    await call('GET', '/v1/models/echo/pause', { key: admin, expect: 405 });

    // problems
    await call('GET', '/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV', { key: acme, expect: 404 });
    await call('GET', '/v1/jobs/not-a-job-id', { key: acme, expect: 400 });
    await call('GET', '/v1/jobs?staus=failed', { key: acme, expect: 400 });
    await call('POST', '/v1/jobs', { key: acme, headers: JSONCT, body: '{"model": "echo"', expect: 400 });
    await call('POST', '/v1/jobs', { key: acme, headers: JSONCT, body: '{"model": "echo", "input": 1, "x": 2}', expect: 400 });
    await call('POST', '/v1/jobs', { key: acme, headers: { 'Content-Type': 'text/plain' }, body: 'hi', expect: 415 });
    await call('POST', '/v1/jobs', { key: acme, headers: JSONCT, body: '{"model": "nope", "input": 1}', expect: 422 });
    await call('POST', '/v1/jobs', { key: acme, headers: JSONCT, body: '{"model": "echo", "input": 1, "timeout_s": -1}', expect: 422 });
    await call('GET', '/v1/jobs', { expect: 401 });
    await call('GET', '/v1/jobs', { key: 'fk_not_a_key', expect: 401 });
    await call('PUT', '/v1/jobs', { key: acme, expect: 405 });
    await call('GET', '/v1/jobs/batch', { key: acme, expect: 405 });

    await stopAll();
    for (const r of procs) {
      const log = r.log();
      if (/AddressSanitizer|LeakSanitizer|runtime error:/.test(log)) fail(`${r.name}: a sanitizer report:\n${log.slice(-3000)}`);
      if (r.name !== 'redis-server' && r.exited && r.exited.code !== 0)
        fail(`${r.name} exited with ${JSON.stringify(r.exited)}:\n${log.slice(-2000)}`);
    }
  } catch (e) {
    fail(`live: ${e.stack || e}`);
    await stopAll();
    for (const r of procs) console.log(`---- ${r.name}, last lines:\n${r.log().split('\n').slice(-15).join('\n')}`);
  } finally {
    if (failures === 0) rmSync(tmp, { recursive: true, force: true });
    else console.log(`  (kept ${tmp})`);
  }
}

await checkValid();
checkRoutes();
checkProblems();
checkSubmitFields();
doc = await SwaggerParser.dereference(structuredClone(raw));
checkQueries(doc);
checkHeaders(doc);
const staticFailures = failures;
console.log(`openapi_test: document: ${staticFailures ? 'FAIL' : 'ok'}`);
await live();
console.log(`openapi_test: live: ${failures > staticFailures ? 'FAIL' : 'ok'}`);
console.log(`openapi_test: ${checks} checks, ${failures} failed`);
process.exit(failures ? 1 : 0);
