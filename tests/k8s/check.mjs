// check.mjs SOURCE_DIR [--self-test]: renders k8s/ and each of k8s/overlays/* with
// `kubectl kustomize`, lints k8s/ with yamllint (k8s/.yamllint), validates every rendered
// object against the schemas of npm kubernetes-models, @kubernetes-models/keda and
// @kubernetes-models/prometheus-operator (a kind without a schema here is an error), and
// checks what a reviewer of fleet's manifests would (checkContracts below). Exit 0 when
// everything holds, 1 with every problem listed otherwise.
//
// --self-test also breaks copies of the manifests in a temporary directory, one way at a
// time, and fails unless each broken copy is refused with the expected message: the
// check can fail.
//
// The schemas check types, required fields and enumerations; they do not refuse a field
// name they do not know (a misspelled optional key passes them), which is why the
// contract checks look for the keys that matter by name.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseAllDocuments } from "yaml";

import { ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service } from "kubernetes-models/v1";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { ScaledObject, TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

// apiVersion/kind -> the model class whose validate() checks it.
const SCHEMAS = new Map(
  [Namespace, ConfigMap, Secret, Service, PersistentVolumeClaim, Deployment, StatefulSet,
   HorizontalPodAutoscaler, PodDisruptionBudget, NetworkPolicy, ScaledObject,
   TriggerAuthentication, ServiceMonitor].map((m) => [`${m.apiVersion}/${m.kind}`, m]));

// A worker's grace period must exceed its drain timeout by this much: after the drain the
// worker still hands back its jobs, leaves the consumer group and sends its last metrics
// report (deploy/local.sh allows the same 10 s).
const GRACE_MARGIN_S = 10;
const GRACE_MIN_S = 60;

// ------------------------------------------------------------------ fleet's options --

// Function-like macros of the headers fleet's programs include: an option table may take
// entries from one (FLEET_REDIS_OPTIONS(...) gives every program the same Redis options).
function headerMacros(src) {
  const macros = new Map();
  for (const dir of ["shared/include/fleet", "gateway", "worker"]) {
    const d = path.join(src, dir);
    for (const f of fs.readdirSync(d).filter((n) => n.endsWith(".h"))) {
      const text = fs.readFileSync(path.join(d, f), "utf8").replace(/\\\n/g, " ");
      for (const m of text.matchAll(/^#define\s+([A-Z_][A-Z0-9_]*)\([^)]*\)(.*)$/gm)) macros.set(m[1], m[2]);
    }
  }
  return macros;
}

// The options table of a C file: {"flag", "FLEET_X", FLEET_OPT_TYPE, default, ...}, with
// the entries of the header macros it uses. Returns Map(env name -> literal default or null).
function optionTable(file, macros) {
  let text = fs.readFileSync(file, "utf8").replace(/\\\n/g, " ");
  for (const [name, body] of macros) if (new RegExp(`\\b${name}\\(`).test(text)) text += `\n${body}`;
  const re = /\{\s*"[a-z0-9-]+",\s*"(FLEET_[A-Z0-9_]+)",\s*FLEET_OPT_[A-Z]+,\s*("(?:[^"\\]|\\.)*")?/g;
  const opts = new Map();
  for (const m of text.matchAll(re)) opts.set(m[1], m[2] ? JSON.parse(m[2]) : null);
  if (opts.size === 0) throw new Error(`${file}: no option table found`);
  return opts;
}

// ------------------------------------------------------------------ rendering --------

function run(cmd, args, opts = {}) {
  try {
    return { ok: true, out: execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], ...opts }) };
  } catch (e) {
    return { ok: false, out: `${e.stdout || ""}${e.stderr || ""}`.trim() || e.message };
  }
}

// The directories to render: k8s itself and every overlay.
function targets(k8s) {
  const list = [k8s];
  const ov = path.join(k8s, "overlays");
  if (fs.existsSync(ov))
    for (const d of fs.readdirSync(ov).sort())
      if (fs.existsSync(path.join(ov, d, "kustomization.yaml"))) list.push(path.join(ov, d));
  return list;
}

function render(dir, errors, label) {
  const r = run("kubectl", ["kustomize", dir]);
  if (!r.ok) {
    errors.push(`${label}: kubectl kustomize failed: ${r.out.split("\n").slice(0, 5).join(" | ")}`);
    return null;
  }
  const objs = [];
  for (const doc of parseAllDocuments(r.out)) {
    if (doc.errors.length) {
      errors.push(`${label}: rendered YAML does not parse: ${doc.errors[0].message}`);
      continue;
    }
    const o = doc.toJS();
    if (o) objs.push(o);
  }
  return objs;
}

// ------------------------------------------------------------------ the checks -------

const id = (o) => `${o.kind}/${o.metadata?.name}`;
const nsOf = (o) => o.metadata?.namespace || "default";

function podSpecOf(o) {
  return ["Deployment", "StatefulSet"].includes(o.kind) ? o.spec?.template?.spec : null;
}

function envValue(container, name) {
  const e = (container.env || []).find((v) => v.name === name);
  return e ? e.value : undefined;
}

function selectorMatches(selector, labels) {
  return Object.entries(selector || {}).every(([k, v]) => labels?.[k] === v);
}

function checkSchemas(objs, label, errors) {
  for (const o of objs) {
    const model = SCHEMAS.get(`${o.apiVersion}/${o.kind}`);
    if (!model) {
      errors.push(`${label}: ${id(o)}: no schema for ${o.apiVersion} ${o.kind} (add one to check.mjs, or do not use it)`);
      continue;
    }
    try {
      new model(o).validate();
    } catch (e) {
      errors.push(`${label}: ${id(o)}: schema: ${e.message.split("\n")[0]}`);
    }
  }
}

function checkContracts(objs, label, opts, infoSrc, errors) {
  const err = (o, msg) => errors.push(`${label}: ${id(o)}: ${msg}`);
  const find = (kind, name, ns) => objs.find((x) => x.kind === kind && x.metadata?.name === name && nsOf(x) === ns);
  const workloads = objs.filter((o) => podSpecOf(o));

  if (!objs.some((o) => o.kind === "NetworkPolicy" && Object.keys(o.spec?.podSelector || {}).length === 0 &&
                        !o.spec.ingress && !o.spec.egress &&
                        ["Ingress", "Egress"].every((t) => o.spec.policyTypes?.includes(t))))
    errors.push(`${label}: no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)`);

  for (const o of objs) {
    if (o.kind !== "Namespace" && !o.metadata?.namespace) err(o, "has no namespace");
  }

  // Secrets and ConfigMaps by name, with their keys.
  const keysOf = (kind, name, ns) => {
    const x = find(kind, name, ns);
    return x ? new Set([...Object.keys(x.data || {}), ...Object.keys(x.stringData || {})]) : null;
  };

  for (const o of workloads) {
    const spec = podSpecOf(o);
    const ns = nsOf(o);
    const podLabels = o.spec.template.metadata?.labels || {};
    const component = podLabels["app.kubernetes.io/component"];
    if (!selectorMatches(o.spec.selector?.matchLabels, podLabels)) err(o, "selector does not match its pod labels");
    const containers = [...(spec.containers || []), ...(spec.initContainers || [])];
    const claimNames = new Set((o.spec.volumeClaimTemplates || []).map((t) => t.metadata?.name));
    for (const v of spec.volumes || []) {
      if (v.configMap && !find("ConfigMap", v.configMap.name, ns)) err(o, `volume ${v.name}: no ConfigMap ${v.configMap.name}`);
      if (v.secret && !find("Secret", v.secret.secretName, ns)) err(o, `volume ${v.name}: no Secret ${v.secret.secretName}`);
      if (v.persistentVolumeClaim && !find("PersistentVolumeClaim", v.persistentVolumeClaim.claimName, ns))
        err(o, `volume ${v.name}: no PersistentVolumeClaim ${v.persistentVolumeClaim.claimName}`);
    }
    const volumeNames = new Set([...(spec.volumes || []).map((v) => v.name), ...claimNames]);
    for (const c of containers) {
      const where = `container ${c.name}`;
      if (!c.image || !/:[^/]+$|@sha256:/.test(c.image)) err(o, `${where}: image '${c.image}' has no tag (set it in the kustomization's images:)`);
      const r = c.resources || {};
      for (const [k, v] of [["requests.cpu", r.requests?.cpu], ["requests.memory", r.requests?.memory], ["limits.memory", r.limits?.memory]])
        if (v === undefined || v === null) err(o, `${where}: no resources.${k}`);
      const sc = c.securityContext || {};
      const nonRoot = sc.runAsNonRoot ?? spec.securityContext?.runAsNonRoot;
      if (nonRoot !== true) err(o, `${where}: runAsNonRoot is not true`);
      if (sc.readOnlyRootFilesystem !== true) err(o, `${where}: readOnlyRootFilesystem is not true`);
      if (sc.allowPrivilegeEscalation !== false) err(o, `${where}: allowPrivilegeEscalation is not false`);
      if (!(sc.capabilities?.drop || []).includes("ALL")) err(o, `${where}: capabilities do not drop ALL`);
      for (const m of c.volumeMounts || []) if (!volumeNames.has(m.name)) err(o, `${where}: mounts unknown volume ${m.name}`);

      // Environment: references resolve, $(VAR) names an earlier entry (Kubernetes
      // expands only those), FLEET_* names an option of the binary the pod runs.
      const table = component === "gateway" ? opts.gateway : component === "worker" ? opts.worker : null;
      const seen = new Set();
      for (const e of c.env || []) {
        for (const m of (e.value || "").matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
          if (!seen.has(m[1])) err(o, `${where}: ${e.name} uses $(${m[1]}), which is not defined above it`);
        seen.add(e.name);
        const ref = e.valueFrom?.secretKeyRef || e.valueFrom?.configMapKeyRef;
        if (ref) {
          const kind = e.valueFrom.secretKeyRef ? "Secret" : "ConfigMap";
          const keys = keysOf(kind, ref.name, ns);
          if (!keys) err(o, `${where}: ${e.name} refers to a ${kind} ${ref.name} that is not rendered`);
          else if (!keys.has(ref.key)) err(o, `${where}: ${e.name} refers to key ${ref.key}, which ${kind} ${ref.name} lacks`);
        }
        if (e.name.startsWith("FLEET_")) {
          if (!table) err(o, `${where}: ${e.name} set on a pod that is neither a gateway nor a worker (label app.kubernetes.io/component)`);
          else if (!table.has(e.name)) err(o, `${where}: ${e.name} is not an option of fleet-${component} (${component === "gateway" ? "gateway" : "worker"}/main.c)`);
        }
      }
    }

    const main = spec.containers?.[0] || {};
    const runsModel = (spec.containers || []).some((c) => envValue(c, "FLEET_MODEL") !== undefined || envValue(c, "FLEET_MODEL_PLUGIN") !== undefined);
    if (runsModel && component !== "worker") err(o, "runs a model (FLEET_MODEL) but its pods are not labelled app.kubernetes.io/component: worker");

    if (component === "worker") {
      if (o.kind !== "Deployment") err(o, "a worker must be a Deployment (KEDA scales it)");
      const model = envValue(main, "FLEET_MODEL");
      if (!model) err(o, "a worker without FLEET_MODEL");
      // fleet-worker's image says CMD ["--model", "echo"] (deploy/Containerfile.worker), and
      // a flag wins over its environment variable: a pod must replace the arguments.
      if (!main.command && !main.args)
        err(o, "sets neither command nor args: arguments an image may carry would override FLEET_MODEL");
      else if ((main.args || []).some((a) => /^--model(=|$)/.test(a)))
        err(o, "passes --model in args: FLEET_MODEL is what the checks and the ScaledObject read; set the model there only");
      const drain = Number(envValue(main, "FLEET_DRAIN_TIMEOUT") ?? opts.worker.get("FLEET_DRAIN_TIMEOUT"));
      const grace = spec.terminationGracePeriodSeconds ?? 30;
      if (!(grace >= GRACE_MIN_S)) err(o, `terminationGracePeriodSeconds ${grace} is below ${GRACE_MIN_S}`);
      if (!(grace >= drain + GRACE_MARGIN_S))
        err(o, `terminationGracePeriodSeconds ${grace} does not exceed FLEET_DRAIN_TIMEOUT ${drain} by ${GRACE_MARGIN_S} s: a stopping worker would be killed mid-drain`);
      const gpu = main.resources?.limits?.["nvidia.com/gpu"];
      const backend = envValue(main, "FLEET_BACKEND");
      if (backend === "cuda" && !gpu) err(o, "FLEET_BACKEND cuda without an nvidia.com/gpu limit");
      if (gpu) {
        if (!spec.nodeSelector && !spec.affinity?.nodeAffinity) err(o, "asks for nvidia.com/gpu with no nodeSelector or node affinity");
        if (!(spec.tolerations || []).some((t) => t.key === "nvidia.com/gpu")) err(o, "asks for nvidia.com/gpu with no toleration of nvidia.com/gpu");
      }
      const scalers = objs.filter((x) => x.kind === "ScaledObject" && nsOf(x) === ns && x.spec?.scaleTargetRef?.name === o.metadata.name);
      if (scalers.length !== 1) err(o, `${scalers.length} ScaledObjects scale it (one per worker Deployment)`);
    }

    if (component === "gateway") {
      const c = main;
      if (c.livenessProbe?.httpGet?.path !== "/healthz") err(o, "gateway liveness probe is not GET /healthz");
      if (c.readinessProbe?.httpGet?.path !== "/readyz") err(o, "gateway readiness probe is not GET /readyz");
      const drain = Number(envValue(c, "FLEET_DRAIN_TIMEOUT") ?? opts.gateway.get("FLEET_DRAIN_TIMEOUT"));
      const pause = c.lifecycle?.preStop?.sleep?.seconds ?? 0;
      const grace = spec.terminationGracePeriodSeconds ?? 30;
      if (!(grace > drain + pause)) err(o, `terminationGracePeriodSeconds ${grace} does not exceed the preStop pause ${pause} + FLEET_DRAIN_TIMEOUT ${drain}`);
    }

    if (component === "redis") {
      if (!(o.spec.volumeClaimTemplates || []).length) err(o, "Redis without volumeClaimTemplates (its AOF needs a volume)");
      const cm = objs.filter((x) => x.kind === "ConfigMap" && nsOf(x) === ns &&
                                    (spec.volumes || []).some((v) => v.configMap?.name === x.metadata.name));
      const text = cm.map((x) => Object.values(x.data || {}).join("\n")).join("\n");
      for (const line of ["appendonly yes", "maxmemory-policy noeviction", "requirepass"])
        if (!text.includes(line)) err(o, `Redis configuration lacks '${line}'`);
    }
  }

  // FLEET_REDIS_WAIT_REPLICAS=N: N replicas must acknowledge each submit even while one
  // Redis pod is down (its PodDisruptionBudget allows one), or submits fail with 503.
  const redis = workloads.filter((w) => w.spec.template.metadata?.labels?.["app.kubernetes.io/component"] === "redis");
  for (const g of workloads.filter((w) => w.spec.template.metadata?.labels?.["app.kubernetes.io/component"] === "gateway")) {
    const n = Number(envValue(podSpecOf(g).containers[0], "FLEET_REDIS_WAIT_REPLICAS") ?? opts.gateway.get("FLEET_REDIS_WAIT_REPLICAS") ?? 0);
    if (n > 0 && redis.length === 1 && !((redis[0].spec.replicas ?? 1) - 2 >= n))
      err(g, `FLEET_REDIS_WAIT_REPLICAS ${n} with ${redis[0].spec.replicas ?? 1} Redis pods: one pod down would leave fewer than ${n} replicas to acknowledge`);
  }

  // A Service selects pods that exist; its named target ports exist on them.
  for (const s of objs.filter((o) => o.kind === "Service")) {
    const pods = workloads.filter((w) => nsOf(w) === nsOf(s) && selectorMatches(s.spec?.selector, w.spec.template.metadata?.labels));
    if (!pods.length) err(s, "selects no pod");
    for (const p of s.spec?.ports || [])
      if (typeof p.targetPort === "string" &&
          !pods.some((w) => podSpecOf(w).containers.some((c) => (c.ports || []).some((cp) => cp.name === p.targetPort))))
        err(s, `target port ${p.targetPort} is not a named port of its pods`);
  }
  for (const s of objs.filter((o) => o.kind === "StatefulSet"))
    if (!find("Service", s.spec.serviceName, nsOf(s))) err(s, `serviceName ${s.spec.serviceName} is not a rendered Service`);

  for (const h of objs.filter((o) => o.kind === "HorizontalPodAutoscaler")) {
    const t = h.spec.scaleTargetRef;
    if (!find(t.kind, t.name, nsOf(h))) err(h, `targets ${t.kind}/${t.name}, which is not rendered`);
  }
  // An autoscaler owns its target's count: a count in the manifest would reset it at
  // every `kubectl apply` (a worker scaled to zero would start again).
  for (const a of objs.filter((o) => o.kind === "HorizontalPodAutoscaler" || o.kind === "ScaledObject")) {
    const t = a.spec.scaleTargetRef;
    const target = find(t.kind || "Deployment", t.name, nsOf(a));
    if (target && target.spec?.replicas !== undefined)
      err(target, `sets replicas although ${a.kind}/${a.metadata.name} scales it`);
  }
  for (const p of objs.filter((o) => o.kind === "PodDisruptionBudget"))
    if (!workloads.some((w) => nsOf(w) === nsOf(p) && selectorMatches(p.spec?.selector?.matchLabels, w.spec.template.metadata?.labels)))
      err(p, "selects no pod");

  // KEDA: the target exists and runs the model the triggers read; the triggers read the
  // gateway's GET /v1/models (queue_depth and running) through a rendered Service.
  const infoFields = ["queue_depth", "running"].filter((f) => infoSrc.includes(`"${f}"`));
  for (const so of objs.filter((o) => o.kind === "ScaledObject")) {
    const ns = nsOf(so);
    const ref = so.spec.scaleTargetRef;
    const target = find(ref.kind || "Deployment", ref.name, ns);
    if (!target) {
      err(so, `scaleTargetRef ${ref.kind || "Deployment"}/${ref.name} is not rendered`);
      continue;
    }
    const model = envValue(podSpecOf(target)?.containers?.[0] || {}, "FLEET_MODEL");
    const read = new Set();
    for (const t of so.spec.triggers || []) {
      if (t.type !== "metrics-api") {
        err(so, `trigger ${t.name || t.type}: type ${t.type}; fleet's depth is read with metrics-api from GET /v1/models`);
        continue;
      }
      const md = t.metadata || {};
      const m = /^models\.#\(name=="([^"]+)"\)\.([a-z_]+)$/.exec(md.valueLocation || "");
      if (!m) err(so, `trigger ${t.name}: valueLocation '${md.valueLocation}' is not models.#(name=="MODEL").FIELD`);
      else {
        if (m[1] !== model) err(so, `trigger ${t.name}: reads model '${m[1]}', its target runs '${model}'`);
        if (!infoFields.includes(m[2])) err(so, `trigger ${t.name}: GET /v1/models has no field '${m[2]}' (gateway/info.c)`);
        read.add(m[2]);
      }
      let u;
      try {
        u = new URL(md.url);
      } catch {
        err(so, `trigger ${t.name}: url '${md.url}' does not parse`);
        continue;
      }
      const [svcName, svcNs, svc] = u.hostname.split(".");
      const service = svc === "svc" ? find("Service", svcName, svcNs) : null;
      if (!service) err(so, `trigger ${t.name}: url host ${u.hostname} is not NAME.NAMESPACE.svc of a rendered Service`);
      else if (!(service.spec.ports || []).some((p) => String(p.port) === (u.port || "80")))
        err(so, `trigger ${t.name}: Service ${svcName} has no port ${u.port || 80}`);
      else if (!selectorMatches(service.spec.selector, find("Deployment", "fleet-gateway", svcNs)?.spec.template.metadata?.labels || {}))
        err(so, `trigger ${t.name}: Service ${svcName} does not select the gateway`);
      if (u.pathname !== "/v1/models") err(so, `trigger ${t.name}: url path ${u.pathname} is not /v1/models`);
      if (md.authMode !== "bearer" || !t.authenticationRef?.name)
        err(so, `trigger ${t.name}: GET /v1/models needs an API key: authMode bearer and an authenticationRef`);
      else if (!find("TriggerAuthentication", t.authenticationRef.name, ns))
        err(so, `trigger ${t.name}: TriggerAuthentication ${t.authenticationRef.name} is not rendered`);
    }
    // Queued jobs start workers; running jobs keep them: scaling to zero waits for both.
    for (const f of ["queue_depth", "running"])
      if (!read.has(f)) err(so, `no trigger reads ${f} (the queued jobs start workers, the running ones keep them)`);
  }
  for (const ta of objs.filter((o) => o.kind === "TriggerAuthentication"))
    for (const r of ta.spec.secretTargetRef || []) {
      const keys = keysOf("Secret", r.name, nsOf(ta));
      if (!keys) err(ta, `Secret ${r.name} is not rendered`);
      else if (!keys.has(r.key)) err(ta, `Secret ${r.name} lacks key ${r.key}`);
    }
  for (const sm of objs.filter((o) => o.kind === "ServiceMonitor")) {
    const svcs = objs.filter((s) => s.kind === "Service" && nsOf(s) === nsOf(sm) && selectorMatches(sm.spec.selector?.matchLabels, s.metadata?.labels));
    if (!svcs.length) err(sm, "selects no Service");
    for (const ep of sm.spec.endpoints || []) {
      if (!svcs.some((s) => s.spec.ports.some((p) => p.name === ep.port))) err(sm, `endpoint port ${ep.port} is not a port of its Services`);
      if (ep.path !== "/metrics") err(sm, `endpoint path ${ep.path} is not /metrics`);
    }
  }
}

// ------------------------------------------------------------------ driver -----------

export function check(k8s, src) {
  const errors = [];
  const macros = headerMacros(src);
  const opts = {
    gateway: optionTable(path.join(src, "gateway/main.c"), macros),
    worker: optionTable(path.join(src, "worker/main.c"), macros),
  };
  const infoSrc = fs.readFileSync(path.join(src, "gateway/info.c"), "utf8");
  const lint = run("yamllint", ["-f", "parsable", "-c", path.join(k8s, ".yamllint"), k8s]);
  if (!lint.ok) errors.push(`yamllint: ${lint.out.split("\n").slice(0, 10).join(" | ")}`);
  const summary = [];
  for (const dir of targets(k8s)) {
    const label = path.relative(path.dirname(k8s), dir) || dir;
    const objs = render(dir, errors, label);
    if (!objs) continue;
    checkSchemas(objs, label, errors);
    checkContracts(objs, label, opts, infoSrc, errors);
    summary.push(`${label}: ${objs.length} objects`);
  }
  return { errors, summary };
}

// Each case breaks one file of a copy of k8s/ and names what the check must then say.
const BREAKS = [
  ["base/redis.yaml", "  replicas: 3\n", "  replicas: three\n", "spec/replicas must be integer"],
  ["base/gateway.yaml", "  revisionHistoryLimit: 5\n", "  replicas: 2\n  revisionHistoryLimit: 5\n",
   "Deployment/fleet-gateway: sets replicas although HorizontalPodAutoscaler/fleet-gateway scales it"],
  ["base/worker-embed.yaml", "terminationGracePeriodSeconds: 180", "terminationGracePeriodSeconds: 125",
   "does not exceed FLEET_DRAIN_TIMEOUT 120"],
  ["overlays/gpu/worker-embed.yaml", "terminationGracePeriodSeconds: 660", "terminationGracePeriodSeconds: 300",
   "overlays/gpu: Deployment/fleet-worker-embed: terminationGracePeriodSeconds 300 does not exceed FLEET_DRAIN_TIMEOUT 600"],
  ["base/worker-echo.yaml", "            - name: FLEET_MODEL\n", "            - name: FLEET_NOT_AN_OPTION\n              value: x\n            - name: FLEET_MODEL\n",
   "FLEET_NOT_AN_OPTION is not an option of fleet-worker"],
  ["base/gateway.yaml", "            - name: FLEET_AUTH\n", "            - name: FLEET_MODEL_ARGS\n              value: x\n            - name: FLEET_AUTH\n",
   "FLEET_MODEL_ARGS is not an option of fleet-gateway"],
  ["base/worker-echo.yaml", '          command: ["fleet-worker"]\n', "",
   "arguments an image may carry would override FLEET_MODEL"],
  ["base/worker-echo.yaml", "  scaleTargetRef:\n    name: fleet-worker-echo\n", "  scaleTargetRef:\n    name: fleet-worker-ech0\n",
   "scaleTargetRef Deployment/fleet-worker-ech0 is not rendered"],
  ["base/worker-embed.yaml", 'valueLocation: models.#(name=="embed").queue_depth', 'valueLocation: models.#(name=="echo").queue_depth',
   "reads model 'echo', its target runs 'embed'"],
  ["base/worker-echo.yaml", ".running\n", ".busy\n", "GET /v1/models has no field 'busy'"],
  ["base/sentinel.yaml", "          resources:\n            requests:\n              cpu: 50m\n", "          resources:\n            requests:\n",
   "container sentinel: no resources.requests.cpu"],
  ["base/redis.yaml", "            runAsNonRoot: true\n            readOnlyRootFilesystem", "            runAsNonRoot: false\n            readOnlyRootFilesystem",
   "container redis: runAsNonRoot is not true"],
  ["base/gateway.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem is not true"],
  ["base/gateway.yaml", "path: /readyz", "path: /healthz", "gateway readiness probe is not GET /readyz"],
  ["base/worker-embed.yaml", "      tolerations:\n        - key: nvidia.com/gpu\n", "      tolerations:\n        - key: gpu\n",
   "no toleration of nvidia.com/gpu"],
  ["base/keda.yaml", "key: keda-api-key", "key: keda-key", "Secret fleet-secrets-"],
  ["base/gateway.yaml", "key: redis-password", "key: redis-passwd", "refers to key redis-passwd"],
  ["base/namespace.yaml", "  name: fleet\n", "  name: fleet\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
   "no schema for example.com/v1 Widget"],
  ["base/networkpolicy.yaml", "  podSelector: {}\n  policyTypes: [\"Ingress\", \"Egress\"]\n---", "  podSelector: {}\n  policyTypes: [\"Ingress\"]\n---",
   "no default-deny NetworkPolicy"],
  ["base/redis.yaml", "    spec:\n      terminationGracePeriodSeconds: 60\n", "    spec:  \n      terminationGracePeriodSeconds: 60\n",
   "yamllint"],
  ["overlays/dev-cpu/gateway.yaml", '            - name: FLEET_REDIS_WAIT_REPLICAS\n              value: "0"\n', "",
   "overlays/dev-cpu: Deployment/fleet-gateway: FLEET_REDIS_WAIT_REPLICAS 1 with 1 Redis pods"],
  ["base/redis.yaml", "  replicas: 3\n", "  replicas: 2\n", "FLEET_REDIS_WAIT_REPLICAS 1 with 2 Redis pods"],
  ["kustomization.yaml", "  - name: fleet-worker-gpu\n    newTag: latest\n", "",
   "image 'fleet-worker-gpu' has no tag"],
];

function selfTest(k8s, src) {
  // The unbroken manifests passed just before (the driver below runs this only then).
  const failures = [];
  for (const [file, from, to, want] of BREAKS) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fleet-k8s-"));
    try {
      const copy = path.join(tmp, "k8s");
      fs.cpSync(k8s, copy, { recursive: true });
      const f = path.join(copy, file);
      const text = fs.readFileSync(f, "utf8");
      if (!text.includes(from)) {
        failures.push(`break of ${file}: the text to replace is not there any more: ${JSON.stringify(from)}`);
        continue;
      }
      fs.writeFileSync(f, text.replace(from, to));
      const { errors } = check(copy, src);
      if (!errors.some((e) => e.includes(want)))
        failures.push(`break of ${file} (${JSON.stringify(to.trim().slice(0, 60))}) was not refused with '${want}'; it said:\n  ${errors.join("\n  ") || "(nothing)"}`);
      else console.log(`self-test: ${file}: refused: ${errors.find((e) => e.includes(want))}`);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  return failures;
}

const [srcArg, mode] = process.argv.slice(2);
if (!srcArg) {
  console.error("usage: check.mjs SOURCE_DIR [--self-test]");
  process.exit(2);
}
const src = path.resolve(srcArg);
const k8s = path.join(src, "k8s");
const { errors, summary } = check(k8s, src);
for (const s of summary) console.log(`k8s_manifests: ${s}`);
if (errors.length) {
  console.error(`k8s_manifests: FAILED: ${errors.length} problems\n  ${errors.join("\n  ")}`);
  process.exit(1);
}
console.log("k8s_manifests: every object renders, lints, matches its schema and the contract checks");
if (mode === "--self-test") {
  const failures = selfTest(k8s, src);
  if (failures.length) {
    console.error(`k8s_manifests: self-test FAILED:\n${failures.join("\n")}`);
    process.exit(1);
  }
  console.log(`k8s_manifests: self-test: all ${BREAKS.length} broken copies refused`);
}
