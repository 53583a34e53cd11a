import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readiness } from './readiness.js';

export interface ObservabilityDeps {
  readonly readiness: Readiness;
  /** The Prometheus exposition, when metrics are on. */
  readonly scrape?: () => Promise<{ readonly body: string; readonly contentType: string }>;
}

/**
 * The operators' listener (`observability.listen`), never the public port: GET /healthz
 * (liveness: the process serves), /readyz (each dependency named, 503 when one fails or while
 * draining), /upstream/healthz (the upstream alone: a liveness probe for an upstream bound to
 * loopback, which the kubelet cannot reach), /metrics (Prometheus). Plain JSON, no auth: bind
 * it where only the platform reaches (loopback, or a port the NetworkPolicy keeps to monitoring).
 */
export async function startObservabilityListener(
  listen: { readonly host: string; readonly port: number },
  deps: ObservabilityDeps,
): Promise<{ readonly url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => void answer(req, res, deps));
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

async function answer(req: IncomingMessage, res: ServerResponse, deps: ObservabilityDeps): Promise<void> {
  const path = (req.url ?? '').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'GET only' }, { allow: 'GET, HEAD' });
  try {
    switch (path) {
      case '/healthz':
        return json(res, 200, { status: 'ok' });
      case '/readyz': {
        const report = await deps.readiness.report();
        return json(res, report.ready ? 200 : 503, { status: report.ready ? 'ready' : 'not ready', ...report });
      }
      case '/upstream/healthz': {
        const r = await deps.readiness.one('upstream');
        return json(res, r.ok ? 200 : 503, { status: r.ok ? 'ok' : 'failing', ...r });
      }
      case '/metrics': {
        if (!deps.scrape) return json(res, 404, { error: 'metrics are off (observability.metrics)' });
        const { body, contentType } = await deps.scrape();
        res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      default:
        return json(res, 404, { error: 'not found' });
    }
  } catch {
    if (!res.headersSent) json(res, 500, { error: 'internal error' });
  }
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}
