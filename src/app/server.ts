import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { BinaryAccess } from '../binary/binary-access.js';
import { FileUrls } from '../binary/file-urls.js';
import { BinaryReads } from '../binary/binary-read.js';
import { BinaryWrites } from '../binary/binary-write.js';
import { BlobLifecycle } from '../binary/blob-lifecycle.js';
import { BundleWrites } from '../binary/bundle-writes.js';
import { HttpPendingLookup } from '../binary/pending-lookup.js';
import { SweepSchedule } from '../binary/sweep-schedule.js';
import type { PlaneDeps } from '../binary/deps.js';
import { RawResponder } from '../binary/raw-response.js';
import { ResourceWrites } from '../binary/resource-writes.js';
import { UpstreamResources } from '../binary/upstream-resources.js';
import { graphqlWithoutUrls, rulesRefusingEverything } from '../config/transport.js';
import type { GatewayConfig } from '../config/types.js';
import { ConfigError, GatewayError } from '../errors/catalogue.js';
import { AuditTrail } from '../audit/trail.js';
import { AccessLog } from '../http/access-log.js';
import { ExchangeAudit } from '../http/exchange-audit.js';
import { requestIdOf } from '../http/context.js';
import { RequestFlow } from '../http/flow.js';
import { buildHealthApp, withOutcomes } from '../http/health.js';
import Fastify from 'fastify';
import { GraphqlApi } from '../graphql/api.js';
import { FilesApi } from '../graphql/files.js';
import { FileBinding } from '../graphql/bind.js';
import { registerAdmin, type AdminDeps } from '../admin/admin-api.js';
import type { AuditRecord } from '../audit/record.js';
import { logStream } from '../logging/logger.js';
import { routeTable } from '../http/routes.js';
import { BaseUrls } from '../lib/public-url.js';
import { sendError } from '../lib/respond.js';
import { ResponseRewrite } from '../rewrite/response-rewrite.js';
import { SecurityContextGuard } from '../security/security-context.js';
import { buildSettings, LiveSettings } from '../security/settings.js';
import type { BlobStore } from '../storage/blob-store.js';
import { createBlobStore } from '../storage/create.js';
import { instrumentStore } from '../storage/instrumented.js';
import { restartOnlyChanges } from './reload-scope.js';
import { NO_METRICS, PromMetrics } from '../telemetry/metrics.js';
import { Tracing } from '../telemetry/tracing.js';
import { UpstreamCalls } from '../telemetry/calls.js';
import { startTraceExport } from '../telemetry/trace-export.js';
import { TlsReloader } from './tls-reload.js';
import { startObservabilityListener } from '../http/observability-listener.js';
import { Readiness } from '../http/readiness.js';
import { crc32Impl } from '../storage/crc32.js';
import { upstreamAgent } from '../upstream/agent.js';
import { UpstreamClient } from '../upstream/client.js';
import { Forwarder } from '../upstream/forwarder.js';
import { PassThroughRoutes } from '../upstream/pass-through.js';

export interface RunningGateway {
  /** Where the gateway listens, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  /** The admin API's own listener, when `admin.listen` is set. */
  readonly adminUrl?: string;
  /** The observability listener (/metrics, /readyz, /healthz), when `observability.listen` is set. */
  readonly observabilityUrl?: string;
  /** The public FHIR base (publicBaseUrl, or the listen URL when none is set). */
  readonly publicBaseUrl: string;
  readonly server: Server;
  /** The settings in force (swapped by reload). */
  readonly settings: LiveSettings;
  /**
   * Applies a new configuration to later requests; listeners and upstream stay as they are (TLS
   * files are re-read). Returns the changed keys that take effect only after a restart.
   */
  reload(config: GatewayConfig): string[];
  /** A reload that could not be applied (the file did not load): counted for the metrics. */
  reloadFailed(): void;
  /**
   * Graceful shutdown: not ready from now on, no new connections, idle keep-alive connections
   * closed, exchanges under way finished — for at most `deadlineMs` (server.shutdownTimeoutMs),
   * then what is left is cut. Then the sweep, the audit trail and the exporters are wound down.
   */
  close(deadlineMs?: number): Promise<void>;
}

const READY_TIMEOUT_MS = 2_000;

function basePathOf(publicBaseUrl: string | undefined): string {
  if (!publicBaseUrl) return '';
  return new URL(publicBaseUrl).pathname.replace(/\/+$/, '');
}

/**
 * The composition root: the one place that builds the gateway's parts and hands each the others
 * it needs (constructor injection), bottom layer first. The server listens before the parts are
 * built, because the public base URL may be the listen address; the request handler is attached
 * right after, before any request can have been read.
 */
export async function startGateway(config: GatewayConfig, log: Logger): Promise<RunningGateway> {
  const upstreamUrl = config.upstream.url;
  if (!upstreamUrl) throw new ConfigError(['upstream.url is required']);
  const obs = config.observability;
  const metrics = obs.listen && obs.metrics ? new PromMetrics(GATEWAY_VERSION) : NO_METRICS;
  const tracing = new Tracing(obs.tracing.enabled);
  const traceExport =
    obs.tracing.enabled && obs.tracing.exporter === 'otlp' ? await startTraceExport(obs.tracing, log, metrics) : undefined;
  const rawStore = await createBlobStore(config.storage);
  // The readiness probe uses the store as it is: its claims are not traffic, not in the store's latency figures.
  const store = instrumentStore(rawStore, metrics, tracing);
  // Stored access policies live in the store too (Azure): made the configured ones now and at every reload.
  // Only policies that still let store URLs read: one ended (notAfter) or without `r` is left off
  // the container, so the store's URLs under it die with the gateway's. The next end is synced
  // when it comes (a timer), not only at the next reload.
  let nextEnd: NodeJS.Timeout | undefined;
  const syncUrlPolicies = async (c: GatewayConfig): Promise<void> => {
    if (!c.signedUrls.store.enabled || !rawStore.syncUrlPolicies) return;
    const now = Date.now();
    const live = c.signedUrls.policies.filter(
      (p) => p.permissions.includes('r') && (p.notAfter === undefined || Date.parse(p.notAfter) > now),
    );
    clearTimeout(nextEnd);
    const ends = live.flatMap((p) => (p.notAfter === undefined ? [] : [Date.parse(p.notAfter)]));
    if (ends.length > 0) {
      // setTimeout takes at most 2^31-1 ms; a later end is looked at again then.
      nextEnd = setTimeout(
        () => void syncUrlPolicies(settingsRef?.current.config ?? c),
        Math.min(Math.min(...ends) - now + 1000, 2 ** 31 - 1),
      );
      nextEnd.unref();
    }
    await rawStore.syncUrlPolicies(live.map((p) => ({ id: p.id, permissions: 'r' }))).then(
      () => log.info({ policies: live.map((p) => p.id) }, 'stored access policies set on the store'),
      (err: unknown) =>
        log.error({ cause: err instanceof Error ? err.message : String(err) }, 'stored access policies could not be set on the store'),
    );
  };
  await syncUrlPolicies(config);

  const tls = config.server.tls;
  const server: Server = tls
    ? https.createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), minVersion: tls.minVersion })
    : http.createServer();
  server.requestTimeout = config.server.requestTimeoutMs;
  const upstreamBase = upstreamUrl.replace(/\/+$/, '');
  // fastify serves on our server: the flow hands it the paths it answers (app.routing).
  // Filled in below, before any request can arrive: the key check needs the settings.
  let settingsRef: LiveSettings | undefined;
  // Reloads seen by the metrics: what is running may differ from the file after one.
  const reloads = { ok: 0, failed: 0, pending: [] as string[] };
  metrics.observe('fbg_config_reloads_total', 'Configuration reloads applied (SIGHUP)', 'counter', () => reloads.ok);
  metrics.observe(
    'fbg_config_reload_failures_total',
    'Configuration reloads refused (the file did not load; the previous one kept)',
    'counter',
    () => reloads.failed,
  );
  metrics.observe(
    'fbg_config_restart_pending',
    'Changed keys that take effect only after a restart (0: what runs is what the file says)',
    'gauge',
    () => reloads.pending.length,
  );
  const ready = config.observability.readiness;
  const readiness = new Readiness(
    {
      upstream: { run: () => upstreamAnswers(upstreamBase), ttlMs: ready.intervalMs },
      store: { run: () => storeTakesWrites(rawStore), ttlMs: ready.storeIntervalMs },
      jwks: { run: () => settingsRef!.current.verifier.ready(), ttlMs: ready.intervalMs },
    },
    log,
    ready.gating,
  );
  const app = buildHealthApp({ serverFactory: () => server, readiness });
  const lookup = new HttpPendingLookup({
    base: upstreamUrl,
    aliases: config.upstream.aliases,
    timeoutMs: config.upstream.timeoutMs,
    rejectUnauthorized: config.upstream.rejectUnauthorized,
  });
  // Filled in below, before any request can arrive: the admin API audits through the trail.
  let audit: (r: AuditRecord) => void = () => undefined;
  const adminDeps = (s: LiveSettings): AdminDeps => ({ store, upstream: lookup, settings: s, audit: (r) => audit(r) });
  const adminOnMain = config.admin.enabled && !config.admin.listen;
  if (adminOnMain) registerAdmin(app, adminDeps(lazySettings(() => settingsRef!)));
  await app.ready();
  await app.listen({ host: config.server.host, port: config.server.port });

  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address;
  const url = `${tls ? 'https' : 'http'}://${host}:${addr.port}`;
  const urls = new BaseUrls(upstreamUrl, config.upstream.aliases, config.server.publicBaseUrl ?? url);
  const settings = new LiveSettings(buildSettings(config, log, undefined, metrics), log, metrics);
  settingsRef = settings;

  const agent = upstreamAgent(urls.upstream, config.upstream);
  const calls = new UpstreamCalls(metrics, tracing);
  const client = new UpstreamClient({ urls, agent, timeoutMs: config.upstream.timeoutMs, calls });
  const responses = new ResponseRewrite({
    store,
    urls,
    spoolDir: () => settings.current.config.server.spoolDir,
    cacheControl: () => settings.current.config.content.cacheControl,
    log,
  });
  const forwarder = new Forwarder({ urls, agent, upstream: config.upstream, responses, log, calls });
  const plane: PlaneDeps = {
    store,
    resources: new UpstreamResources(client, responses),
    blobs: new BlobLifecycle(store, client, log, urls.public),
    raw: new RawResponder(store, log),
    guard: new SecurityContextGuard(client),
    forwarder,
    publicBase: urls.public,
  };
  const accessLog = new AccessLog(log, metrics);
  const trail = new AuditTrail({ audit: config.audit, upstream: config.upstream, stdout: logStream(log), log, env: process.env });
  audit = (r) => trail.record(r);
  const exchangeAudit = new ExchangeAudit(trail, settings);
  const access = new BinaryAccess(plane);
  const files = new FileUrls(plane, access);
  const flow = new RequestFlow({
    settings,
    basePath: basePathOf(config.server.publicBaseUrl),
    routes: routeTable({
      access,
      resources: new ResourceWrites(plane),
      binaryReads: new BinaryReads(plane),
      binaryWrites: new BinaryWrites(plane),
      passThrough: new PassThroughRoutes(forwarder),
      files,
    }),
    files,
    // Its path is fixed at start (a reload can turn it on or off: graphql.enabled is read per request).
    graphql: {
      path: config.graphql.path,
      api: new GraphqlApi(
        new FilesApi({
          store,
          blobs: plane.blobs,
          urls: files,
          publicBase: urls.public,
          encryptsAtRest: config.storage.driver !== 'filesystem' || config.storage.filesystem.encryption !== undefined,
        }),
        new FileBinding({ store, resources: plane.resources, publicBase: urls.public }),
      ),
    },
    bundles: new BundleWrites(plane),
    health: app.routing,
    accessLog,
    audit: exchangeAudit,
    tracing,
    adminOnMain,
    log,
    patientReads: plane.guard,
  });
  server.on('request', flow.handle);
  // Answer Expect: 100-continue only after the checks passed (handlers call Exchange.continue100).
  server.on('checkContinue', flow.handle);
  // An Expect the gateway cannot meet is refused before the flow; it still gets a request id.
  // Audited like any refusal the flow makes (the flow never sees it).
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const rec = accessLog.start(requestIdOf(req, settings.current.trustedProxies), res);
    rec.code = 'EXPECTATION_FAILED';
    exchangeAudit.watch(rec, res);
    sendError(req, res, new GatewayError('EXPECTATION_FAILED'), rec.id);
  });
  // After the main listener has its handler: nothing it accepted waits on the admin listener's start.
  let adminApp: Awaited<ReturnType<typeof startAdminListener>> | undefined;
  if (config.admin.enabled && config.admin.listen) {
    try {
      adminApp = await startAdminListener(config.admin.listen, adminDeps(settings), tls);
    } catch (err) {
      await app.close();
      agent.destroy();
      throw err;
    }
  }
  const sweeps = new SweepSchedule({
    store,
    audit,
    upstream: lookup,
    config: () => settings.current.config,
    log,
    metrics,
  });
  sweeps.start();
  const tlsReload = tls
    ? new TlsReloader(tls, [server as https.Server, ...(adminApp ? [adminApp.app.server as unknown as https.Server] : [])], log)
    : undefined;
  if (metrics instanceof PromMetrics) {
    metrics.observe('fbg_audit_queue_records', 'Audit records waiting for their destination', 'gauge', () => trail.stats().pending);
    metrics.observe(
      'fbg_audit_records_dropped_total',
      'Audit records dropped (destination not keeping up)',
      'counter',
      () => trail.stats().dropped,
    );
    metrics.observe('fbg_audit_events_posted_total', 'AuditEvents the FHIR server took', 'counter', () => trail.stats().posted);
    metrics.observe('fbg_audit_events_dropped_total', 'AuditEvents not posted or refused', 'counter', () => trail.stats().postDropped);
  }
  let opsListener: Awaited<ReturnType<typeof startObservabilityListener>> | undefined;
  if (obs.listen) {
    try {
      opsListener = await startObservabilityListener(obs.listen, {
        readiness,
        ...(metrics instanceof PromMetrics ? { scrape: () => metrics.scrape() } : {}),
      });
    } catch (err) {
      await sweeps.stop();
      await Promise.all([app.close(), adminApp?.app.close()]);
      agent.destroy();
      throw err;
    }
  }
  // `listen` is what the socket is bound to (0.0.0.0 means every interface); `url` reaches it from here.
  const bound = `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  // What an operator checks first after a start: which build, which store, where the operators' endpoints are.
  log.info(
    {
      version: GATEWAY_VERSION,
      listen: bound,
      url,
      publicBaseUrl: urls.public,
      upstream: urls.upstream,
      tls: Boolean(tls),
      store: rawStore.driver,
      ...(opsListener ? { observability: opsListener.url } : {}),
      metrics: metrics.enabled,
      tracing: obs.tracing.enabled ? obs.tracing.exporter : 'off',
      ...(adminApp ? { admin: adminApp.url } : config.admin.enabled ? { admin: `${url}/_admin/` } : {}),
    },
    'gateway listening',
  );
  warnHttpsUnreachable(config, log);
  if (crc32Impl !== 'native')
    log.warn(
      'the native CRC-32 (@node-rs/crc32) did not load on this platform: reads of plain blobs are checked with zlib, several times slower',
    );

  return {
    url,
    ...(adminApp ? { adminUrl: adminApp.url } : {}),
    ...(opsListener ? { observabilityUrl: opsListener.url } : {}),
    publicBaseUrl: urls.public,
    server,
    settings,
    reload(next: GatewayConfig) {
      settings.reload(next);
      void syncUrlPolicies(next);
      warnHttpsUnreachable(next, log);
      log.level = next.logging.level;
      accessLog.level = next.logging.level;
      tlsReload?.reload();
      reloads.ok++;
      // Against what the process started with: listeners, the store and the pool are built once.
      reloads.pending = restartOnlyChanges(config, next);
      return reloads.pending;
    },
    reloadFailed() {
      reloads.failed++;
    },
    async close(deadlineMs = settings.current.config.server.shutdownTimeoutMs) {
      // Listeners first (in-flight exchanges finish and are audited), then the sweep under way
      // (stopped between blobs), then the audit trail's queue and AuditEvents.
      readiness.drain();
      tlsReload?.close();
      const sweepDone = sweeps.stop();
      await drain(server, Promise.all([app.close(), adminApp?.app.close()]), deadlineMs, log);
      await opsListener?.close();
      await sweepDone;
      await trail.close();
      await traceExport?.shutdown().catch(() => undefined);
      forwarder.close();
      agent.destroy();
    },
  };
}

/**
 * Waits for `closed` (the listeners closed: every connection gone) for at most `deadlineMs`,
 * closing keep-alive connections as they fall idle (a client holding one open would otherwise
 * keep the gateway up for its whole timeout); at the deadline the rest are cut, and counted.
 */
async function drain(server: Server, closed: Promise<unknown>, deadlineMs: number, log: Logger): Promise<void> {
  server.closeIdleConnections();
  const idle = setInterval(() => server.closeIdleConnections(), 100);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(() => resolve('deadline'), deadlineMs);
  });
  try {
    if ((await Promise.race([closed, deadline])) === 'deadline') {
      const open = await new Promise<number>((resolve) => server.getConnections((_err, n) => resolve(n)));
      log.warn({ connections: open, deadlineMs }, 'shutdown deadline reached: exchanges still under way are cut');
      server.closeAllConnections();
      await closed;
    }
  } finally {
    clearInterval(idle);
    clearTimeout(timer);
  }
}

/** The admin API on a listener of its own (admin.listen): a port only operators reach. */
async function startAdminListener(
  listen: NonNullable<GatewayConfig['admin']['listen']>,
  deps: AdminDeps,
  tls: GatewayConfig['server']['tls'],
) {
  // HTTPS with the gateway's own certificate when it terminates TLS: admin tokens never travel in clear.
  const app = tls
    ? Fastify({
        logger: false,
        return503OnClosing: true,
        https: { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), minVersion: tls.minVersion },
      })
    : Fastify({ logger: false, return503OnClosing: true });
  withOutcomes(app);
  registerAdmin(app, deps);
  await app.listen({ host: listen.host, port: listen.port });
  const addr = app.server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return { app, url: `${tls ? 'https' : 'http'}://${host}:${addr.port}` };
}

/** The settings, looked up when first used: the admin routes are registered before they exist. */
function lazySettings(get: () => LiveSettings): LiveSettings {
  return new Proxy({} as LiveSettings, { get: (_t, key) => Reflect.get(get(), key) as unknown });
}

/**
 * What a start or reload says about a policy that is valid but likely wrong: rules that require
 * HTTPS where no request can arrive as HTTPS (they refuse everything: named), and GraphQL without URLs.
 */
function warnHttpsUnreachable(config: GatewayConfig, log: Logger): void {
  const noUrls = graphqlWithoutUrls(config);
  if (noUrls) log.warn(noUrls);
  const rules = rulesRefusingEverything(config);
  if (rules.length === 0) return;
  log.warn(
    { rules },
    'these rules require HTTPS, but the gateway neither terminates TLS (server.tls) nor trusts a proxy to forward it (server.trustedProxies): every request they match will be refused (403 INSECURE_TRANSPORT)',
  );
}

/** Readiness: the upstream answers its CapabilityStatement (anything but a 5xx). */
async function upstreamAnswers(base: string): Promise<void> {
  const r = await fetch(`${base}/metadata`, {
    signal: AbortSignal.timeout(READY_TIMEOUT_MS),
    headers: { accept: 'application/fhir+json' },
  });
  await r.body?.cancel();
  if (r.status >= 500) throw new Error(`the upstream answered ${r.status} to /metadata`);
}

/**
 * Readiness: the store takes a write and a delete (a read-only volume, a bucket without write
 * access or an unreachable endpoint fails every upload: such a gateway is not ready). One claim
 * of this process's own, made and dropped: the same exclusive create the sweeper relies on.
 */
async function storeTakesWrites(store: BlobStore): Promise<void> {
  const name = `readyz-${hostname()}-${process.pid}`;
  if (!(await store.claim(name, 'readiness probe'))) {
    await store.unclaim(name); // left by a probe cut short
    if (!(await store.claim(name, 'readiness probe'))) throw new Error('the probe claim could not be made');
  }
  await store.unclaim(name);
}

/** This build's version (package.json), for /metrics' build info. */
const GATEWAY_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
