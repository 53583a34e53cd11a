import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { GatewayConfig } from './config/types.js';
import { BinaryPlane } from './binary/plane.js';
import { createBlobStore } from './storage/create.js';
import { GatewayError } from './errors.js';
import { buildApp } from './http/app.js';
import { buildState, Gateway } from './http/gateway.js';
import { sendError } from './http/respond.js';
import { PassThrough } from './proxy/pass-through.js';

export interface RunningGateway {
  /** Where the gateway listens, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  /** The public FHIR base (publicBaseUrl, or the listen URL when none is set). */
  readonly publicBaseUrl: string;
  readonly server: Server;
  readonly gateway: Gateway;
  /** Applies a new configuration to later requests; listeners and upstream stay as they are. */
  reload(config: GatewayConfig): void;
  close(): Promise<void>;
}

const READY_TIMEOUT_MS = 2_000;

function basePathOf(publicBaseUrl: string | undefined): string {
  if (!publicBaseUrl) return '';
  return new URL(publicBaseUrl).pathname.replace(/\/+$/, '');
}

export async function startGateway(config: GatewayConfig, log: Logger): Promise<RunningGateway> {
  const upstreamUrl = config.upstream.url;
  if (!upstreamUrl) throw new Error('upstream.url is required');
  const basePath = basePathOf(config.server.publicBaseUrl);
  const passThrough = new PassThrough({ ...config.upstream, url: upstreamUrl }, config.server.publicBaseUrl ?? '', log);
  const upstreamBase = passThrough.upstreamBase;

  const store = await createBlobStore(config.storage);
  let gateway!: Gateway;
  const binary = new BinaryPlane(store, passThrough, () => gateway.current.config, log);
  // Answers that may carry attachments go through the rewrite engine on their way back.
  passThrough.responseHook = binary.responses;
  let server!: Server;
  const app = buildApp({
    serverFactory: (appHandler) => {
      const toApp = appHandler;
      gateway = new Gateway(buildState(config, basePath), passThrough, toApp, log, binary);
      const tls = config.server.tls;
      server = tls
        ? https.createServer(
            { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), minVersion: tls.minVersion },
            gateway.handle,
          )
        : http.createServer(gateway.handle);
      // Answer Expect: 100-continue only after the checks passed (Gateway calls writeContinue).
      server.on('checkContinue', gateway.handle);
      server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) =>
        sendError(req, res, new GatewayError('EXPECTATION_FAILED'), undefined),
      );
      server.requestTimeout = config.server.requestTimeoutMs;
      return server;
    },
    upstreamReady: async () => {
      try {
        const r = await fetch(`${upstreamBase}/metadata`, {
          signal: AbortSignal.timeout(READY_TIMEOUT_MS),
          headers: { accept: 'application/fhir+json' },
        });
        await r.body?.cancel();
        return r.status < 500;
      } catch {
        return false;
      }
    },
  });
  await app.ready();
  await app.listen({ host: config.server.host, port: config.server.port });
  const addr = server.address() as AddressInfo;
  const scheme = config.server.tls ? 'https' : 'http';
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address;
  const url = `${scheme}://${host}:${addr.port}`;
  const publicBaseUrl = config.server.publicBaseUrl?.replace(/\/+$/, '') ?? url;
  passThrough.publicBase = publicBaseUrl;
  log.info({ listen: url, publicBaseUrl, upstream: upstreamBase, tls: Boolean(config.server.tls) }, 'gateway listening');

  return {
    url,
    publicBaseUrl,
    server,
    gateway,
    reload(next: GatewayConfig) {
      gateway.swap(buildState(next, basePath, gateway.current));
      gateway.setLogLevel(next.logging.level);
    },
    async close() {
      await app.close();
      passThrough.close();
    },
  };
}
