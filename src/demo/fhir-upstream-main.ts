/**
 * Child-process entry for the demo/test FHIR upstream. The parent forks it with
 * `execArgv: ['--experimental-websocket']` and waits for `{ url }` on the IPC channel.
 *
 * Env: FHIR_UPSTREAM_PORT (default 0, ephemeral), FHIR_UPSTREAM_HOST (default 127.0.0.1).
 */
import { startFhirUpstream } from './fhir-upstream.js';

function portFromEnv(value: string | undefined): number {
  if (value === undefined || value === '') return 0;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`FHIR_UPSTREAM_PORT must be an integer from 0 to 65535, got ${JSON.stringify(value)}`);
  }
  return port;
}

try {
  const upstream = await startFhirUpstream({
    port: portFromEnv(process.env['FHIR_UPSTREAM_PORT']),
    host: process.env['FHIR_UPSTREAM_HOST'] || undefined,
  });

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    upstream.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // The parent went away (or let us go): nobody is left to use this server.
  process.once('disconnect', stop);

  if (process.send) process.send({ url: upstream.url });
  else console.log(upstream.url);
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
}
