#!/usr/bin/env node
// Checks every HTTP response the integration tests recorded against the
// OpenAPI document (the contract).
//
//   node tests/contract/validate.mjs openapi.yaml build/contract.jsonl
//
// The log has one JSON object per line, written by tests/integration/harness.c:
//   {"method","path" (no query),"query" (string|null),"status","content_type",
//    "headers": {lowercased location, etag, allow, retry-after, x-request-id},
//    "body" (text, or null for 304 / HEAD and for binary bodies:
//    application/octet-stream and application/x-npy, whose "body_length" is
//    logged instead), ["body_error"]}
//
// For each response:
//   1. the path template and method are found in `paths` (a request that
//      matches no path must be a 404, and a known path with a method it does
//      not have a 405 whose Allow header lists exactly the path's methods,
//      unless refused before routing: 400 for bad framing, 401 under /v1
//      without a valid token; all are the spec's `x-batchd-any-route`
//      responses);
//   2. the status is declared for the operation (an exact code, then a range
//      such as 4XX, then `default` only when the operation declares it);
//   3. required response headers that the log records are present and match
//      their schema;
//   4. the content type (without parameters) is declared, or the response
//      declares no content and the body is empty;
//   5. the body is validated with ajv (JSON Schema 2020-12, which OpenAPI 3.1
//      uses): JSON bodies against the media type's schema; NDJSON bodies line
//      by line against the line schema (`x-batchd-line-schema`, or
//      `itemSchema` as in OpenAPI 3.2, else `schema`);
//   6. a 2xx response to a request with query parameters the operation does
//      not declare is a violation (the service must refuse those with 400).
//
// $refs: the whole document is registered with ajv under a URN; schemas
// taken from operations are cloned with their local "#/..." refs rewritten to
// that URN, so that every #/components/... ref resolves in the document.
//
// The summary lists responses checked, counts per operationId and status,
// each violation (the same violation is printed 3 times, then counted), and
// operations never exercised. Exit status: 0 when there is no violation and
// every operation was exercised at least once; 1 otherwise; 2 on a usage or
// input error.

import { createReadStream, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import YAML from 'yaml';
import Ajv2020Module from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

const Ajv2020 = Ajv2020Module.default ?? Ajv2020Module;
const addFormats = addFormatsModule.default ?? addFormatsModule;

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const SPEC_URN = 'urn:batchd:openapi';
const RECORDED_HEADERS = new Set(['location', 'etag', 'allow', 'retry-after', 'x-request-id']);
const SAME_VIOLATION_SHOWN = 3;

function usage(msg) {
  if (msg) console.error(`validate.mjs: ${msg}`);
  console.error('usage: node tests/contract/validate.mjs openapi.yaml contract.jsonl');
  process.exit(2);
}

const [specPath, logPath] = process.argv.slice(2);
if (!specPath || !logPath) usage();

let spec;
try {
  spec = YAML.parse(readFileSync(specPath, 'utf8'));
} catch (e) {
  usage(`cannot read ${specPath}: ${e.message}`);
}
if (!spec || typeof spec !== 'object' || !spec.paths) usage(`${specPath} has no paths`);

// ---------------------------------------------------------------- helpers

function unescapePointerPart(p) {
  return decodeURIComponent(p).replace(/~1/g, '/').replace(/~0/g, '~');
}

// Resolves a local "#/a/b" pointer in the spec.
function pointerGet(ref) {
  if (typeof ref !== 'string' || !ref.startsWith('#')) throw new Error(`unsupported $ref ${ref}`);
  let cur = spec;
  for (const part of ref.slice(1).split('/').slice(1)) {
    if (cur === undefined || cur === null) break;
    cur = cur[unescapePointerPart(part)];
  }
  if (cur === undefined) throw new Error(`$ref ${ref} resolves to nothing`);
  return cur;
}

// Follows OpenAPI-level $refs (responses, headers, parameters) to the object.
function deref(obj) {
  for (let i = 0; i < 32 && obj && typeof obj === 'object' && typeof obj.$ref === 'string'; i++) {
    obj = pointerGet(obj.$ref);
  }
  return obj;
}

// Deep clone of a schema with local refs pointed at the registered document.
function rewriteRefs(node) {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (!node || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$ref' && typeof v === 'string' && v.startsWith('#')) out[k] = SPEC_URN + v;
    else out[k] = rewriteRefs(v);
  }
  return out;
}

function essence(ct) {
  return (ct || '').split(';')[0].trim().toLowerCase();
}

function mediaMatches(declared, actual) {
  const d = essence(declared);
  if (d === actual || d === '*/*') return true;
  if (d.endsWith('/*')) return actual.startsWith(d.slice(0, -1));
  return false;
}

const isNdjson = (m) => ['application/x-ndjson', 'application/jsonl', 'application/ndjson',
  'application/jsonlines'].includes(m);
const isJson = (m) => m === 'application/json' || m.endsWith('+json');

// ------------------------------------------------------------- ajv set-up

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
addFormats(ajv);
// OpenAPI's own numeric formats: checked for range, not just ignored.
const intRange = (bits) => ({
  type: 'number',
  validate: (x) => Number.isInteger(x) && x >= -(2 ** (bits - 1)) && x < 2 ** (bits - 1),
});
ajv.addFormat('int32', intRange(32));
ajv.addFormat('int64', { type: 'number', validate: (x) => Number.isInteger(x) });
ajv.addFormat('float', { type: 'number', validate: () => true });
ajv.addFormat('double', { type: 'number', validate: () => true });
ajv.addFormat('binary', { type: 'string', validate: () => true });
ajv.addFormat('byte', { type: 'string', validate: (s) => /^[A-Za-z0-9+/]*={0,2}$/.test(s) });
ajv.addFormat('password', { type: 'string', validate: () => true });
try {
  ajv.addSchema({ ...spec, $id: SPEC_URN }, undefined, undefined, false);
} catch (e) {
  usage(`cannot register ${specPath} with ajv: ${e.message}`);
}

const compiled = new Map(); // key -> validate function (or an Error)
function validatorFor(key, schema) {
  if (!compiled.has(key)) {
    try {
      compiled.set(key, ajv.compile(rewriteRefs(schema)));
    } catch (e) {
      compiled.set(key, e);
    }
  }
  return compiled.get(key);
}

function formatErrors(errors) {
  // oneOf failures repeat every branch's errors; keep them all, but compactly.
  return (errors || [])
    .map((e) => `${e.instancePath || '/'} ${e.message}${
      e.params && Object.keys(e.params).length ? ' ' + JSON.stringify(e.params) : ''}`)
    .join('; ');
}

// ---------------------------------------------------------- path matching

const templates = Object.keys(spec.paths).map((tpl) => {
  const names = [];
  const re = new RegExp('^' + tpl.split(/(\{[^}]+\})/).map((part) => {
    const m = /^\{([^}]+)\}$/.exec(part);
    if (m) {
      names.push(m[1]);
      return '([^/]+)';
    }
    return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }).join('') + '$');
  return { tpl, re, nparams: names.length };
}).sort((a, b) => a.nparams - b.nparams); // literal paths win over templated ones

function findPath(path) {
  for (const t of templates) if (t.re.test(path)) return t.tpl;
  return null;
}

// Every operation in the spec, keyed "METHOD template".
const operations = new Map();
for (const [tpl, item] of Object.entries(spec.paths)) {
  for (const m of METHODS) {
    if (!item[m]) continue;
    const op = item[m];
    const params = [...(item.parameters || []), ...(op.parameters || [])].map(deref);
    operations.set(`${m.toUpperCase()} ${tpl}`, {
      id: op.operationId || `${m.toUpperCase()} ${tpl}`,
      op,
      tpl,
      method: m,
      queryNames: new Set(params.filter((p) => p && p.in === 'query').map((p) => p.name)),
    });
  }
}

const anyRoute = spec['x-batchd-any-route'];

// ------------------------------------------------------------- validation

const counts = new Map(); // "opId status" -> n
const seenOps = new Map(); // opId -> n
const seenStatuses = new Map(); // opId -> Set(status key)
const violations = new Map(); // signature -> {first: [text...], n}
let nViolations = 0;
let checked = 0;
const badRecords = new Set(); // the records with at least one violation
const notes = new Set();

function violation(rec, sig, text) {
  nViolations++;
  badRecords.add(rec);
  const where = `${rec.method} ${rec.path}${rec.query ? '?' + rec.query : ''} -> ${rec.status}`;
  const v = violations.get(sig) || { shown: [], n: 0 };
  v.n++;
  if (v.shown.length < SAME_VIOLATION_SHOWN) v.shown.push(`${where}: ${text}`);
  violations.set(sig, v);
}

function statusResponse(responses, status) {
  const s = String(status);
  if (responses[s]) return { key: s, resp: deref(responses[s]) };
  const range = `${s[0]}XX`;
  if (responses[range]) return { key: range, resp: deref(responses[range]) };
  if (responses[range.toLowerCase()]) return { key: range, resp: deref(responses[range.toLowerCase()]) };
  if (responses.default) return { key: 'default', resp: deref(responses.default) };
  return null;
}

function checkHeaders(rec, opId, statusKey, resp) {
  const got = rec.headers || {};
  for (const [name, h0] of Object.entries(resp.headers || {})) {
    const lname = name.toLowerCase();
    if (lname === 'content-type') continue;
    const h = deref(h0);
    if (!RECORDED_HEADERS.has(lname)) {
      notes.add(`header ${name} of ${opId} ${statusKey} is not recorded by the harness; not checked`);
      continue;
    }
    const value = got[lname];
    if (value === undefined) {
      if (h.required) violation(rec, `${opId} ${statusKey} header ${lname} missing`,
        `required header ${name} is missing`);
      continue;
    }
    if (h.schema) {
      let v = value;
      const t = h.schema.type;
      if ((t === 'integer' || t === 'number') && /^-?\d+(\.\d+)?$/.test(value)) v = Number(value);
      const validate = validatorFor(`header ${opId} ${statusKey} ${lname}`, h.schema);
      if (validate instanceof Error) {
        violation(rec, `schema ${opId} ${statusKey} ${lname}`, `cannot compile header schema: ${validate.message}`);
      } else if (!validate(v)) {
        violation(rec, `${opId} ${statusKey} header ${lname} ${formatErrors(validate.errors)}`,
          `header ${name}: ${JSON.stringify(value)}: ${formatErrors(validate.errors)}`);
      }
    }
  }
}

function validateValue(rec, sigBase, key, schema, value, what) {
  const validate = validatorFor(key, schema);
  if (validate instanceof Error) {
    violation(rec, `compile ${key}`, `cannot compile the schema (${key}): ${validate.message}`);
    return;
  }
  if (!validate(value)) {
    const errs = formatErrors(validate.errors);
    // The signature leaves out array indexes so one systematic error is grouped.
    violation(rec, `${sigBase} ${errs.replace(/\/\d+/g, '/N')}`, `${what}: ${errs}`);
  }
}

function checkBody(rec, opId, statusKey, resp) {
  const content = resp.content || {};
  const declared = Object.keys(content);
  const actual = essence(rec.content_type);
  const body = rec.body;
  const sig = `${opId} ${statusKey}`;
  if (rec.body_error) {
    violation(rec, `${sig} body_error`, rec.body_error);
    return;
  }
  if (declared.length === 0) {
    if (body !== null && body !== undefined && body !== '') {
      violation(rec, `${sig} undeclared body`,
        `the response declares no content but has a body (${rec.content_type || 'no content type'}): ${String(body).slice(0, 120)}`);
    }
    return;
  }
  if (body === null || body === undefined) return; // 304 / HEAD: nothing to check
  if (!actual) {
    violation(rec, `${sig} no content type`, `no Content-Type; declared: ${declared.join(', ')}`);
    return;
  }
  const mediaKey = declared.find((d) => mediaMatches(d, actual));
  if (!mediaKey) {
    violation(rec, `${sig} content type ${actual}`,
      `content type ${rec.content_type} is not declared (declared: ${declared.join(', ')})`);
    return;
  }
  const media = content[mediaKey] || {};
  const key = `${opId} ${statusKey} ${mediaKey}`;
  if (isNdjson(actual)) {
    const lineSchema = media['x-batchd-line-schema'] || media.itemSchema || media.schema;
    if (media.schema && lineSchema !== media.schema) {
      validateValue(rec, `${sig} ndjson-body`, `${key} body`, media.schema, body, 'body');
    }
    if (body !== '' && !body.endsWith('\n')) {
      violation(rec, `${sig} ndjson no final newline`, 'the NDJSON body does not end with a newline');
    }
    const lines = body.split('\n');
    if (lines.length && lines[lines.length - 1] === '') lines.pop();
    lines.forEach((line, i) => {
      let v;
      try {
        v = JSON.parse(line);
      } catch (e) {
        violation(rec, `${sig} ndjson line not JSON`, `line ${i + 1} is not JSON (${e.message}): ${line.slice(0, 120)}`);
        return;
      }
      if (lineSchema) validateValue(rec, `${sig} ndjson-line`, `${key} line`, lineSchema, v, `line ${i + 1}`);
    });
    return;
  }
  if (isJson(actual)) {
    let v;
    try {
      v = JSON.parse(body);
    } catch (e) {
      violation(rec, `${sig} body not JSON`, `the body is not JSON (${e.message}): ${body.slice(0, 120)}`);
      return;
    }
    if (media.schema) validateValue(rec, `${sig} body`, `${key} body`, media.schema, v, 'body');
    return;
  }
  if (media.schema) validateValue(rec, `${sig} text`, `${key} text`, media.schema, body, 'body');
}

function tally(opId, statusKey, status) {
  const k = `${opId} ${status}`;
  counts.set(k, (counts.get(k) || 0) + 1);
  seenOps.set(opId, (seenOps.get(opId) || 0) + 1);
  if (!seenStatuses.has(opId)) seenStatuses.set(opId, new Set());
  seenStatuses.get(opId).add(statusKey);
}

function checkRecord(rec) {
  checked++;
  // Methods are case-sensitive (RFC 9110 9.1): "get" is not GET and
  // matches no operation (the service answers it with 405).
  const method = String(rec.method || '');
  const status = rec.status;
  const tpl = findPath(rec.path);
  const opKey = tpl ? `${method} ${tpl}` : null;
  const entry = opKey ? operations.get(opKey) : undefined;

  if (!entry) {
    // Outside every operation: only the any-route responses are allowed.
    const wantStatus = tpl ? 405 : 404;
    const label = tpl ? '(known path, other method)' : '(unknown path)';
    tally(label, String(status), status);
    if (!anyRoute || !anyRoute.responses) {
      violation(rec, `no operation ${opKey || rec.path}`,
        tpl ? `no ${method} operation on ${tpl}` : 'no path template matches');
      return;
    }
    // Before routing, bad framing is 400 anywhere, and under /v1 a missing
    // or wrong token is 401 (it comes before 404/405 so as not to map the
    // routes): both are declared under x-batchd-any-route too.
    const beforeRouting = status === 400 ||
      (status === 401 && /^\/v1(\/|$)/.test(String(rec.path || '')));
    if (status !== wantStatus && !beforeRouting) {
      violation(rec, `any-route ${label} ${status}`,
        `a request outside the spec's operations must get ${wantStatus}` +
        ` (or 400, or 401 under /v1), got ${status}`);
      return;
    }
    const found = statusResponse(anyRoute.responses, status);
    if (!found) {
      violation(rec, `any-route ${status} undeclared`, `x-batchd-any-route does not declare ${status}`);
      return;
    }
    if (tpl && status === 405) {
      const allowed = new Set(METHODS.filter((m) => spec.paths[tpl][m]).map((m) => m.toUpperCase()));
      const got = new Set(String((rec.headers || {}).allow || '').split(',').map((s) => s.trim().toUpperCase()).filter(Boolean));
      if (allowed.has('GET')) got.delete('HEAD'); // HEAD is implied by GET
      const missing = [...allowed].filter((m) => !got.has(m));
      const extra = [...got].filter((m) => !allowed.has(m));
      if (missing.length || extra.length) {
        violation(rec, `allow ${tpl}`,
          `Allow: ${JSON.stringify((rec.headers || {}).allow)} but ${tpl} has ${[...allowed].join(', ')}` +
          `${missing.length ? ` (missing ${missing.join(', ')})` : ''}${extra.length ? ` (not in the spec: ${extra.join(', ')})` : ''}`);
      }
    }
    checkHeaders(rec, `any-route`, String(status), found.resp);
    checkBody(rec, `any-route`, String(status), found.resp);
    return;
  }

  const { id: opId, op } = entry;
  const found = statusResponse(op.responses || {}, status);
  tally(opId, found ? found.key : String(status), status);
  if (!found) {
    violation(rec, `${opId} status ${status}`,
      `status ${status} is not declared for ${opId} (declared: ${Object.keys(op.responses || {}).join(', ')})`);
    return;
  }
  if (status >= 200 && status < 300 && rec.query) {
    const names = rec.query.split('&').filter(Boolean).map((kv) => decodeURIComponent(kv.split('=')[0]));
    const unknown = names.filter((n) => !entry.queryNames.has(n));
    if (unknown.length) {
      violation(rec, `${opId} accepted unknown query ${unknown.join(',')}`,
        `query parameter(s) ${unknown.join(', ')} are not declared for ${opId} but the response is ${status}`);
    }
  }
  checkHeaders(rec, opId, found.key, found.resp);
  checkBody(rec, opId, found.key, found.resp);
}

// ------------------------------------------------------------------- main

let lineNo = 0;
let badLines = 0;
const rl = createInterface({ input: createReadStream(logPath, { encoding: 'utf8' }), crlfDelay: Infinity });
try {
  for await (const line of rl) {
    lineNo++;
    if (!line.trim()) continue;
    let rec;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      badLines++;
      console.log(`VIOLATION ${logPath}:${lineNo}: not a JSON line (${e.message})`);
      continue;
    }
    if (typeof rec.method !== 'string' || typeof rec.path !== 'string' || !Number.isInteger(rec.status)) {
      badLines++;
      console.log(`VIOLATION ${logPath}:${lineNo}: a record needs method, path and status`);
      continue;
    }
    try {
      checkRecord(rec);
    } catch (e) {
      violation(rec, `internal ${e.message}`, `validator error: ${e.message}`);
    }
  }
} catch (e) {
  usage(`cannot read ${logPath}: ${e.message}`);
}

console.log(`contract: checked ${checked} responses from ${logPath} against ${specPath}`);
const byOp = [...counts.entries()].sort((a, b) => a[0].localeCompare(b[0]));
for (const [k, n] of byOp) console.log(`  ${k.padEnd(44)} ${n}`);

for (const note of notes) console.log(`note: ${note}`);

const allOps = [...new Set([...operations.values()].map((e) => e.id))];
const never = allOps.filter((id) => !seenOps.has(id));
for (const e of operations.values()) {
  if (!seenOps.has(e.id)) continue;
  const declared = Object.keys(e.op.responses || {});
  const seen = seenStatuses.get(e.id) || new Set();
  const unseen = declared.filter((s) => !seen.has(s));
  if (unseen.length) console.log(`info: ${e.id}: declared statuses never seen: ${unseen.join(', ')}`);
}
if (never.length) console.log(`WARNING: operations never exercised: ${never.join(', ')}`);

for (const v of violations.values()) {
  for (const text of v.shown) console.log(`VIOLATION ${text}`);
  if (v.n > v.shown.length) console.log(`  (and ${v.n - v.shown.length} more like the above)`);
}

const failed = nViolations + badLines > 0 || never.length > 0 || checked === 0;
if (checked === 0) console.log('FAIL: no responses were recorded');
/* every recorded response is checked: none is skipped */
console.log(`contract: ${checked - badRecords.size} passed, ${badRecords.size + badLines} failed, 0 skipped ` +
  `(responses; ${nViolations + badLines} violations, ${never.length} operations never exercised) ` +
  `-> ${failed ? 'FAIL' : 'ok'}`);
process.exit(failed ? 1 : 0);
