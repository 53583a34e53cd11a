import { readdir } from 'node:fs/promises';

/** The names in directory `dir`, or none when it does not exist (yet): a store or spool directory is made on first use. */
export async function namesIn(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}
