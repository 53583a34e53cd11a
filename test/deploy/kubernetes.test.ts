// deploy/kubernetes/: every document is a valid Kubernetes object (kubernetes-models' schemas),
// and the pod meets what the manifest promises: the "restricted" Pod Security Standard on the pod
// and both containers, probes and resources on every container, size-limited emptyDirs, pinned
// images, HAPI on loopback behind the gateway, and a NetworkPolicy in front of it all.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Service } from 'kubernetes-models/v1';
import type { IContainer, IPodSpec, IProbe, ISecurityContext } from 'kubernetes-models/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ROOT } from '../helpers/cli.js';

const DIR = join(ROOT, 'deploy', 'kubernetes');

interface Doc {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  [k: string]: unknown;
}

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

const docs: Doc[] = readdirSync(DIR)
  .filter((f) => /\.ya?ml$/.test(f))
  .flatMap((f) =>
    parseAllDocuments(readFileSync(join(DIR, f), 'utf8'))
      .map((d) => d.toJS() as Doc | null)
      .filter((d): d is Doc => d !== null),
  );
const ofKind = (kind: string) => docs.filter((d) => d.kind === kind);
const deployments = ofKind('Deployment') as unknown as {
  metadata: { name: string };
  spec: { replicas?: number; template: { spec: IPodSpec } };
}[];

t.test('every document validates against its Kubernetes schema', async (t) => {
  t.ok(docs.length >= 5, `documents found: ${docs.map((d) => d.kind).join(', ')}`);
  for (const doc of docs) {
    const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
    t.ok(Model, `${doc.kind} ${doc.metadata.name}: a kind this test knows (${doc.apiVersion})`);
    if (!Model) continue;
    t.doesNotThrow(() => new Model(doc as never).validate(), `${doc.kind} ${doc.metadata.name} is valid`);
  }
  // The validator is a real one: a wrong type is refused.
  const broken = structuredClone(deployments[0]) as unknown as { spec: { replicas: unknown } };
  broken.spec.replicas = 'two';
  t.throws(() => new Deployment(broken as never).validate(), 'a broken Deployment is refused');
});

/** Keys a container's securityContext may carry here: a typo would otherwise pass the schema unnoticed. */
const SECURITY_CONTEXT_KEYS = [
  'runAsNonRoot',
  'runAsUser',
  'runAsGroup',
  'allowPrivilegeEscalation',
  'readOnlyRootFilesystem',
  'capabilities',
  'seccompProfile',
];

t.test('the pod meets the restricted Pod Security Standard', async (t) => {
  t.ok(deployments.length > 0);
  for (const d of deployments) {
    const pod = d.spec.template.spec;
    t.match(
      pod.securityContext,
      { runAsNonRoot: true, runAsUser: Number, runAsGroup: Number, fsGroup: Number, seccompProfile: { type: 'RuntimeDefault' } },
      `${d.metadata.name}: pod securityContext`,
    );
    t.not(pod.securityContext?.runAsUser, 0);
    t.equal(pod.automountServiceAccountToken, false, 'no service account token: nothing here talks to the API server');
    t.notOk(pod.hostNetwork || pod.hostPID || pod.hostIPC, 'no host namespaces');
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      const sc = c.securityContext as ISecurityContext;
      t.same(
        Object.keys(sc).filter((k) => !SECURITY_CONTEXT_KEYS.includes(k)),
        [],
        `${c.name}: no unknown securityContext keys`,
      );
      t.match(
        sc,
        {
          runAsNonRoot: true,
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
          seccompProfile: { type: 'RuntimeDefault' },
        },
        `${c.name}: restricted securityContext`,
      );
      t.notOk(sc.capabilities?.add?.length, `${c.name}: adds no capability`);
      t.ok(Number.isInteger(sc.runAsUser) && sc.runAsUser! > 0, `${c.name}: a numeric non-root user (${sc.runAsUser})`);
      t.ok(Number.isInteger(sc.runAsGroup) && sc.runAsGroup! > 0, `${c.name}: a numeric non-root group`);
      t.notOk(
        (c.ports ?? []).some((p) => p.hostPort),
        `${c.name}: no host ports`,
      );
    }
  }
});

t.test('every container has probes, resource requests and a memory limit', async (t) => {
  for (const d of deployments) {
    for (const c of d.spec.template.spec.containers) {
      // HAPI is probed through the gateway: no liveness that a crash-looping gateway would fail.
      const kinds =
        c.name === 'hapi' ? (['readinessProbe', 'startupProbe'] as const) : (['livenessProbe', 'readinessProbe', 'startupProbe'] as const);
      for (const kind of kinds) {
        const probe: IProbe | undefined = c[kind];
        t.ok(probe?.httpGet ?? probe?.tcpSocket ?? probe?.exec ?? probe?.grpc, `${c.name}: ${kind}`);
      }
      if (c.name === 'hapi') t.equal(c.livenessProbe, undefined, 'HAPI: no liveness through the gateway');
      t.match(c.resources, { requests: { cpu: /\S/, memory: /\S/ }, limits: { memory: /\S/ } }, `${c.name}: resources`);
    }
  }
});

t.test('emptyDirs have a size limit; images are pinned', async (t) => {
  for (const d of deployments) {
    const pod = d.spec.template.spec;
    for (const v of pod.volumes ?? []) {
      if (v.emptyDir) t.ok(v.emptyDir.sizeLimit, `${v.name}: emptyDir with sizeLimit ${v.emptyDir.sizeLimit}`);
    }
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      const image = c.image ?? '';
      const tag = /^(?:[^/]+\/)*[^/:@]+(?::([^/@]+))?(?:@sha256:[0-9a-f]{64})?$/.exec(image);
      t.ok(tag?.[1] || image.includes('@sha256:'), `${c.name}: ${image} names a tag or digest`);
      t.notMatch(tag?.[1] ?? '', /^(latest|stable|main|master)$/, `${c.name}: ${image} is not a moving tag`);
    }
  }
});

t.test('HAPI listens on loopback only and is probed through the gateway', async (t) => {
  for (const d of deployments) {
    const containers = d.spec.template.spec.containers;
    const hapi = containers.find((c) => /hapi/.test(c.image ?? '')) as IContainer;
    const gateway = containers.find((c) => /fhir-binary-gateway/.test(c.image ?? '')) as IContainer;
    t.ok(hapi && gateway, 'HAPI and the gateway in one pod');
    const env = Object.fromEntries((hapi.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
    t.equal(env['SERVER_ADDRESS'], '127.0.0.1', 'HAPI binds to loopback');
    t.notOk(hapi.ports?.length, 'HAPI declares no port');
    t.match(
      env,
      { SPRING_DATASOURCE_URL: { secretKeyRef: Object }, SPRING_DATASOURCE_PASSWORD: { secretKeyRef: Object } },
      'DB from a Secret',
    );
    t.ok((d.spec.replicas ?? 1) > 1, 'more than one replica: they share the external database and the S3 store');
    const ops = gateway.ports?.find((p) => p.name === 'ops')?.containerPort;
    for (const kind of ['readinessProbe', 'startupProbe'] as const) {
      t.match(hapi[kind]?.httpGet, { path: '/upstream/healthz', port: ops }, `HAPI ${kind}: the gateway's /upstream/healthz`);
    }
    t.match(gateway.readinessProbe?.httpGet, { path: '/readyz', port: 'ops' });
    t.match(gateway.livenessProbe?.httpGet, { path: '/healthz', port: 'ops' });
    const genv = Object.fromEntries((gateway.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
    t.match(
      genv,
      { S3_ACCESS_KEY_ID: { secretKeyRef: Object }, S3_SECRET_ACCESS_KEY: { secretKeyRef: Object } },
      'S3 credentials from a Secret',
    );
    for (const c of containers) {
      for (const e of c.env ?? []) {
        if (/PASSWORD|SECRET|TOKEN|ACCESS_KEY/i.test(e.name)) t.notOk(e.value, `${c.name}: ${e.name} comes from a Secret, not a literal`);
      }
    }
  }
});

t.test('the policy ConfigMap: the gateway reads it, HTTPS, the upstream on loopback, a narrow proxy range', async (t) => {
  const [cm] = ofKind('ConfigMap') as unknown as { metadata: { name: string }; data: Record<string, string> }[];
  const policy = parse(cm.data['policy.yaml']) as {
    server: { trustedProxies: string[]; tls: object };
    upstream: { url: string };
    storage: { driver: string };
    observability: { listen: { port: number } };
  };
  t.equal(policy.upstream.url, 'http://127.0.0.1:8080/fhir');
  t.ok(policy.server.tls, 'the gateway terminates TLS');
  t.equal(policy.storage.driver, 's3', 'replicas share one store');
  for (const cidr of policy.server.trustedProxies) {
    const bits = Number(cidr.split('/')[1] ?? 32);
    t.ok(bits >= 16, `trustedProxies ${cidr} is narrow (not a whole private range)`);
  }
  const d = deployments[0];
  const gateway = d.spec.template.spec.containers.find((c) => c.name === 'gateway')!;
  const config = gateway.env?.find((e) => e.name === 'GATEWAY_CONFIG')?.value;
  const mount = gateway.volumeMounts?.find((m) => config?.startsWith(`${m.mountPath}/`));
  t.ok(mount, `GATEWAY_CONFIG ${config} is on a mounted volume`);
  const volume = d.spec.template.spec.volumes?.find((v) => v.name === mount?.name);
  t.equal(volume?.configMap?.name, cm.metadata.name, 'the policy ConfigMap');
  t.equal(config?.slice(mount!.mountPath.length + 1), 'policy.yaml');
  const ops = gateway.ports?.find((p) => p.name === 'ops')?.containerPort;
  t.equal(policy.observability.listen.port, ops, 'the observability listener is the probed port');
});

t.test('a NetworkPolicy admits only the gateway ports, from named namespaces', async (t) => {
  const policies = ofKind('NetworkPolicy') as unknown as {
    spec: {
      podSelector: { matchLabels: Record<string, string> };
      policyTypes: string[];
      ingress: { from: { namespaceSelector?: object; podSelector?: object; ipBlock?: object }[]; ports: { port: number }[] }[];
    };
  }[];
  t.equal(policies.length, 1);
  const [np] = policies;
  const d = deployments[0] as unknown as { spec: { template: { metadata: { labels: Record<string, string> } } } };
  t.match(d.spec.template.metadata.labels, np.spec.podSelector.matchLabels, 'selects the pod');
  t.ok(np.spec.policyTypes.includes('Ingress'));
  const gateway = deployments[0].spec.template.spec.containers.find((c) => c.name === 'gateway')!;
  const ports = Object.fromEntries((gateway.ports ?? []).map((p) => [p.name, p.containerPort]));
  t.same(
    np.spec.ingress.flatMap((r) => r.ports.map((p) => p.port)).sort(),
    [ports['https'], ports['ops']].sort(),
    'the gateway TLS port and the observability port, nothing else',
  );
  for (const rule of np.spec.ingress) {
    t.ok(rule.from.length > 0, 'every rule names who may connect');
    for (const peer of rule.from) t.ok(peer.namespaceSelector && !peer.ipBlock, 'by namespace, not by address');
  }
});
