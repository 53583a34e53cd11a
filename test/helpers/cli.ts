// The built CLI, spawned the way users run it: `node bin/fhir-binary-gateway.js`.
import type { Test } from 'tap';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'fhir-binary-gateway.js');
export const EX_CONFIG = 78;

/** Builds dist/ when it is missing or older than a source file (`make test` builds first). */
export function ensureBuilt(): void {
  const cli = join(ROOT, 'dist', 'app', 'cli.js');
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((e) =>
        e.isDirectory() ? newest(join(dir, e.name)) : e.name.endsWith('.ts') ? statSync(join(dir, e.name)).mtimeMs : 0,
      ),
    );
  if (existsSync(cli) && statSync(cli).mtimeMs >= newest(join(ROOT, 'src'))) return;
  execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
    cwd: ROOT,
    stdio: 'inherit',
  });
}

export function tempDir(t: Test, prefix = 'fbg-cli-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Cli {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  /** The exit code once the process ended. */
  readonly exited: Promise<number | null>;
  /** JSON log lines printed so far (pino writes them to stdout, among the banner). */
  logs(): Record<string, unknown>[];
  waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs?: number): Promise<T>;
}

/**
 * Spawns the CLI (`bin` defaults to this tree's launcher) with a clean environment — no GATEWAY_*
 * or AWS_* variable of the caller's — plus `env`; ended with SIGTERM (then SIGKILL) at teardown.
 */
export function spawnCli(t: Test, args: string[], env: Record<string, string>, cwd: string, bin = BIN): Cli {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('GATEWAY_') && !k.startsWith('AWS_')),
  ) as Record<string, string>;
  const child = spawn(process.execPath, [bin, ...args], { cwd, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const cli: Cli = {
    child,
    stdout: '',
    stderr: '',
    exited,
    logs() {
      return cli.stdout
        .split('\n')
        .slice(0, -1) // the last piece is an incomplete line (or empty)
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    async waitFor(what, probe, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      let done = false;
      void exited.then(() => (done = true));
      for (;;) {
        const v = probe();
        if (v !== undefined && v !== false) return v;
        if (done) throw new Error(`the CLI exited while waiting for ${what}\nstdout:\n${cli.stdout}\nstderr:\n${cli.stderr}`);
        if (Date.now() > until) throw new Error(`timed out waiting for ${what}\nstdout:\n${cli.stdout}\nstderr:\n${cli.stderr}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
  child.stdout.setEncoding('utf8').on('data', (d: string) => (cli.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (cli.stderr += d));
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  });
  return cli;
}
