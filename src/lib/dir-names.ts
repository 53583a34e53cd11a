import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** The names in directory `dir`, or none when it does not exist (yet): a store or spool directory is made on first use. */
export async function namesIn(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * The regular files in `dir` whose names `match` and that were last changed before `before` (crash
 * leftovers); removed unless `dryRun` (one already gone is not an error). Resolves with their names.
 */
export async function staleFiles(dir: string, match: (name: string) => boolean, before: Date, dryRun: boolean): Promise<string[]> {
  const found: string[] = [];
  for (const name of (await namesIn(dir)).filter(match)) {
    const path = join(dir, name);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile() || st.mtime >= before) continue;
    found.push(name);
    if (!dryRun) await unlink(path).catch(() => undefined);
  }
  return found;
}
