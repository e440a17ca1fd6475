#!/usr/bin/env node
// Checks the deployment files: each is valid YAML (every document of it),
// and they say what the README promises.
//
//   node tests/image/check-deploy.mjs REPO_DIR
//
// docker-compose.yml: service batchd with a named volume at
// /var/lib/batchd and a healthcheck running `batchd healthcheck`.
// deploy/kubernetes/*.yaml: a Deployment whose container has liveness
// /healthz and readiness /readyz probes, cpu and memory requests, runs as
// non-root and mounts the PersistentVolumeClaim that is defined; a Service
// that selects the Deployment's pods and targets a port the container has.
// Exit status 0 when everything holds, 1 otherwise (each problem printed).

import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';

const root = process.argv[2] || '.';
const problems = [];
const fail = (msg) => problems.push(msg);

function load(path) {
  const docs = YAML.parseAllDocuments(readFileSync(path, 'utf8'));
  const out = [];
  for (const d of docs) {
    for (const e of d.errors) fail(`${path}: ${e.message}`);
    if (!d.errors.length && d.contents !== null) out.push(d.toJS());
  }
  return out;
}

// docker-compose.yml
const [compose] = load(join(root, 'docker-compose.yml'));
const svc = compose?.services?.batchd;
if (!svc) fail('docker-compose.yml: no service "batchd"');
else {
  const test = [].concat(svc.healthcheck?.test ?? []).join(' ');
  if (!/batchd healthcheck/.test(test)) fail(`docker-compose.yml: healthcheck is "${test}"`);
  const vol = (svc.volumes ?? []).find((v) => String(v).endsWith(':/var/lib/batchd'));
  if (!vol) fail('docker-compose.yml: no volume at /var/lib/batchd');
  else if (!(String(vol).split(':')[0] in (compose.volumes ?? {})))
    fail(`docker-compose.yml: volume ${vol} is not a named volume of the file`);
}

// deploy/kubernetes
const dir = join(root, 'deploy', 'kubernetes');
const objects = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).flatMap((f) => load(join(dir, f)));
const byKind = (k) => objects.filter((o) => o?.kind === k);
const [dep] = byKind('Deployment');
const [service] = byKind('Service');
const pvcs = byKind('PersistentVolumeClaim');
if (!dep) fail('deploy/kubernetes: no Deployment');
if (!service) fail('deploy/kubernetes: no Service');
if (!pvcs.length) fail('deploy/kubernetes: no PersistentVolumeClaim');
if (dep) {
  const pod = dep.spec?.template?.spec ?? {};
  const c = (pod.containers ?? [])[0] ?? {};
  if (c.livenessProbe?.httpGet?.path !== '/healthz') fail('Deployment: liveness probe is not GET /healthz');
  if (c.readinessProbe?.httpGet?.path !== '/readyz') fail('Deployment: readiness probe is not GET /readyz');
  const req = c.resources?.requests ?? {};
  if (!req.cpu || !req.memory) fail('Deployment: cpu and memory requests are missing');
  if (pod.securityContext?.runAsNonRoot !== true) fail('Deployment: not runAsNonRoot');
  const claims = (pod.volumes ?? []).map((v) => v.persistentVolumeClaim?.claimName).filter(Boolean);
  for (const cl of claims)
    if (!pvcs.some((p) => p.metadata?.name === cl)) fail(`Deployment: claim ${cl} is not defined`);
  if (!(c.volumeMounts ?? []).some((m) => m.mountPath === '/var/lib/batchd'))
    fail('Deployment: nothing mounted at /var/lib/batchd');
  const labels = dep.spec?.template?.metadata?.labels ?? {};
  if (service) {
    for (const [k, v] of Object.entries(service.spec?.selector ?? {}))
      if (labels[k] !== v) fail(`Service: selector ${k}=${v} does not match the pods`);
    const names = (c.ports ?? []).flatMap((p) => [p.name, p.containerPort]);
    for (const p of service.spec?.ports ?? [])
      if (!names.includes(p.targetPort)) fail(`Service: targetPort ${p.targetPort} is not a container port`);
  }
}

if (problems.length) {
  for (const p of problems) console.error(`check-deploy: ${p}`);
  process.exit(1);
}
console.log(`check-deploy: docker-compose.yml and ${objects.length} Kubernetes objects are valid`);
