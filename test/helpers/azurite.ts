import { spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface Azurite {
  readonly connectionString: string;
  readonly accountName: string;
  readonly accountKey: string;
  /** Account URL, path-style: `http://127.0.0.1:<port>/devstoreaccount1`. */
  readonly blobEndpoint: string;
  /** Stops the server (SIGTERM, then SIGKILL after a grace period); resolves once it has exited. Also run at teardown. */
  stop(): Promise<void>;
}

/** Azurite's built-in development account (public, documented by Microsoft). */
const ACCOUNT_NAME = 'devstoreaccount1';
const ACCOUNT_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 3_000;

// Run the script with this very node rather than through the .bin shim's `#!/usr/bin/env node`,
// so the pid we hold is the server itself and killing it leaves nothing behind.
const SCRIPT = realpathSync(fileURLToPath(new URL('../../node_modules/.bin/azurite-blob', import.meta.url)));

/**
 * An in-memory azurite blob service on a port the OS picked, stopped when `t` ends. Azurite
 * prints the address it bound, which is both the port and the readiness signal, so there is no
 * window in which another process could take a port we chose beforehand.
 */
export async function startAzurite(t: { teardown(fn: () => unknown): void }): Promise<Azurite> {
  // Without NODE_OPTIONS: the test runner's loaders and coverage hooks have no business in the server.
  const { NODE_OPTIONS: _drop, ...env } = process.env;
  const child = spawn(
    process.execPath,
    [SCRIPT, '--inMemoryPersistence', '--disableTelemetry', '--skipApiVersionCheck', '--blobHost', '127.0.0.1', '--blobPort', '0'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // A test process that dies without running teardowns must not leave the server running.
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const stop = async (): Promise<void> => {
    process.off('exit', killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  };
  t.teardown(stop);

  const blobEndpoint = await new Promise<string>((resolve, reject) => {
    let out = '';
    let ready = false;
    const timer = setTimeout(() => fail(new Error(`azurite did not start within ${READY_TIMEOUT_MS} ms:\n${out}`)), READY_TIMEOUT_MS);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    // Once ready, its access log is drained and dropped, so a long test file cannot fill the pipe.
    const collect = (chunk: Buffer): void => {
      if (ready) return;
      out += chunk.toString();
      const m = /successfully listens on (http:\/\/\S+)/.exec(out);
      if (!m) return;
      ready = true;
      clearTimeout(timer);
      resolve(`${m[1]}/${ACCOUNT_NAME}`);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.once('error', fail);
    child.once('exit', (code, signal) => fail(new Error(`azurite exited (${code ?? signal}) before it was ready:\n${out}`)));
  });

  return {
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT_NAME};AccountKey=${ACCOUNT_KEY};BlobEndpoint=${blobEndpoint};`,
    accountName: ACCOUNT_NAME,
    accountKey: ACCOUNT_KEY,
    blobEndpoint,
    stop,
  };
}
