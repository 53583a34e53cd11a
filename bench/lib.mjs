// What the benchmark scripts share: pinned child processes that are always cleaned up, a temp
// work directory, readiness polling, medians, nginx and gateway configuration, token minting.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const benchDir = dirname(fileURLToPath(import.meta.url));
export const root = join(benchDir, '..');

/**
 * A temp directory and the processes started for one run. `close()` kills every child, waits
 * for them to exit (nginx may still be writing temp files into `work`), then removes `work`:
 * it runs from `finally` and from SIGINT/SIGTERM, so an interrupted run leaves nothing behind.
 */
export function createRun(prefix) {
  const work = mkdtempSync(join(tmpdir(), prefix));
  const children = [];
  let closing;

  /** Starts `cmd` pinned to one CPU. taskset execs `cmd`, so `child.pid` is the process itself. */
  function start(cmd, args, opts = {}) {
    const child = spawn('taskset', ['-c', opts.cpu ?? '1', cmd, ...args], {
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', opts.stdout ?? 'ignore', 'inherit'],
    });
    child.exited = new Promise((resolve) => child.once('exit', resolve));
    children.push(child);
    return child;
  }

  // One close for everyone: a signal arriving mid-run and the run's own `finally` both wait for it.
  function close() {
    closing ??= (async () => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
      await Promise.race([Promise.all(children.map((c) => c.exited)), new Promise((r) => setTimeout(r, 5000))]);
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      rmSync(work, { recursive: true, force: true });
    })();
    return closing;
  }

  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      close().finally(() => process.exit(130));
    });
  }
  return { work, start, close };
}

export async function waitFor(url, headers = {}) {
  for (let i = 0; i < 300; i++) {
    try {
      const r = await fetch(url, { headers });
      await r.arrayBuffer();
      if (r.status < 500) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not ready: ${url}`);
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Round r's order of `names`: rotated each round so drift on the shared machine does not favour one target. */
export function rotate(names, r) {
  return names.slice(r % names.length).concat(names.slice(0, r % names.length));
}

/** A one-worker foreground nginx whose pid, logs and temp files all stay in `work`. `http` is the rest of the http block. */
export function writeNginxConf(work, http) {
  // Started as root, nginx runs its worker as nobody, which could not read or write the 0700 work dir.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  const conf = join(work, 'nginx.conf');
  mkdirSync(join(work, 'nginx'), { recursive: true });
  writeFileSync(
    conf,
    `${user}worker_processes 1;
daemon off;
pid ${work}/nginx.pid;
error_log ${work}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${work}/nginx/body;
  proxy_temp_path ${work}/nginx/proxy;
  fastcgi_temp_path ${work}/nginx/fastcgi;
  uwsgi_temp_path ${work}/nginx/uwsgi;
  scgi_temp_path ${work}/nginx/scgi;
${http}
}
`,
  );
  return conf;
}

/** Writes a JWKS file into `work` and returns a token it verifies, with the given SMART scopes. */
export function mintToken(work, scope) {
  const jwksFile = join(work, 'jwks.json');
  const token = execFileSync('node', [join(benchDir, 'servers/mint-token.mjs'), jwksFile, ...(scope ? [scope] : [])], {
    cwd: root,
    encoding: 'utf8',
  }).trim();
  return { jwksFile, token };
}

/**
 * A gateway policy for the bench: the issuer and audience mint-token.mjs signs for, plain HTTP on
 * loopback, JWT + SMART required on everything. `extra` is appended YAML (storage, content, …).
 */
export function writeGatewayConf(work, name, { port, upstream, jwksFile, level = 'warn', maxRequestBytes, extra = '' }) {
  const file = join(work, name);
  writeFileSync(
    file,
    `server: { host: 127.0.0.1, port: ${port}, publicBaseUrl: "http://127.0.0.1:${port}/fhir" }
upstream: { url: "${upstream}" }
auth: { issuers: [https://issuer.bench], audiences: [fhir-binary-gateway], jwksFile: ${jwksFile}, algorithms: [RS256] }
defaultRule:
  require: { https: false, auth: true, smart: true }
${maxRequestBytes === undefined ? '' : `  limits: { maxRequestBytes: ${maxRequestBytes} }\n`}logging: { level: ${level} }
${extra}`,
  );
  return file;
}

/** Starts the built gateway (dist/) with `conf` on CPU 1, where the existing benches put the proxy under test. */
export function startGateway(run, conf) {
  return run.start('node', [join(root, 'bin/fhir-binary-gateway.js'), '--config', conf]);
}

export function writeOut(name, data) {
  mkdirSync(join(benchDir, 'out'), { recursive: true });
  writeFileSync(join(benchDir, 'out', name), JSON.stringify(data, null, 2));
}

export const MiB = 1024 * 1024;
const UNITS = { K: 1024, M: MiB, G: 1024 * MiB };

/** BENCH_SIZES as `{label, bytes}` ("64M,1G": K/M/G are binary units). */
export function benchSizes(fallback) {
  return (process.env.BENCH_SIZES ?? fallback).split(',').map((s) => {
    const m = /^(\d+)([KMG]?)$/i.exec(s.trim());
    if (!m) throw new Error(`BENCH_SIZES: cannot read ${JSON.stringify(s)}`);
    return { label: s.trim(), bytes: Number(m[1]) * (UNITS[m[2].toUpperCase()] ?? 1) };
  });
}

/** Runs a shell pipeline on CPU 0 (the client's core); secrets travel in the environment, not in argv. */
export function client(script, env = {}) {
  return execFileSync('taskset', ['-c', '0', 'bash', '-o', 'pipefail', '-c', script], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 1 << 20,
  }).trim();
}

/** Peak resident set of a process since the last reset, and the reset itself (Linux ≥ 4.0: writing 5 to clear_refs). */
export const peakRssMiB = (pid) => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
export const resetPeakRss = (pid) => writeFileSync(`/proc/${pid}/clear_refs`, '5');
