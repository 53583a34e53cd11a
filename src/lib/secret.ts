import { readFileSync } from 'node:fs';

/** A secret named by the configuration (a file or an environment variable): a missing one throws, naming where it was expected (never its value). */
export function readSecret(
  source: { readonly file?: string | undefined; readonly env?: string | undefined },
  what: string,
  env: NodeJS.ProcessEnv,
): string {
  if (source.file !== undefined) {
    try {
      return readFileSync(source.file, 'utf8').trim();
    } catch (err) {
      throw new Error(`${what}: cannot read ${source.file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  const v = source.env !== undefined ? env[source.env] : undefined;
  if (!v) throw new Error(`${what}: environment variable ${source.env ?? '(unset)'} is empty or not set`);
  return v.trim();
}
