import http from 'node:http';
import https from 'node:https';
import { loadConfig, type ConfigEnv } from '../config/load.js';
import { embeddedDefaults } from '../config/embedded.js';

const TIMEOUT_MS = 3_000;

/**
 * `fhir-binary-gateway health [--config FILE]`: whether the gateway this policy configures, running
 * on this host, answers its liveness check — on the observability listener when there is one,
 * else on the main listener (HTTPS when it terminates TLS; its own certificate is not verified:
 * the probe sends nothing and talks to loopback). Exit 0 alive, 1 not. For a container's
 * HEALTHCHECK, where no curl is installed.
 */
export async function runHealth(values: { config?: string }, env: ConfigEnv, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const { config } = loadConfig(values.config ?? env.GATEWAY_CONFIG, env, embeddedDefaults);
  const ops = config.observability.listen;
  const target = ops
    ? { secure: false, host: ops.host, port: ops.port }
    : { secure: config.server.tls !== undefined, host: config.server.host, port: config.server.port };
  const host = target.host === '0.0.0.0' ? '127.0.0.1' : target.host === '::' ? '::1' : target.host;
  // Without an answer, why not (the probe's log says it: refused, a timeout), and whom it asked.
  let error: string | undefined;
  const status = await new Promise<number>((resolve) => {
    const req = (target.secure ? https : http).get(
      { host, port: target.port, path: '/healthz', timeout: TIMEOUT_MS, ...(target.secure ? { rejectUnauthorized: false } : {}) },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer in ${TIMEOUT_MS} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      error = (err.code && !err.message.includes(err.code) ? `${err.code} ${err.message}` : err.message).slice(0, 200);
      resolve(0);
    });
  });
  out.write(`${JSON.stringify({ healthy: status === 200, status, ...(error ? { error, target: `${host}:${target.port}` } : {}) })}\n`);
  return status === 200 ? 0 : 1;
}
