import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import type { Readable, Transform } from 'node:stream';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { SizeLimit } from '../proxy/size-limit.js';
import { Externalizer, type ExternalizedBlob, type ExternalizeOptions } from './externalize.js';

export interface Spooled {
  /** The rewritten body: a private file the caller streams on and removes. */
  readonly file: string;
  readonly size: number;
  readonly blobs: readonly ExternalizedBlob[];
  readonly rootType: string | undefined;
  /** The top-level resource's securityContext as sent, if any. */
  readonly rootSecurityContext: unknown;
}

/**
 * Reads a FHIR JSON body (a request, or a spooled Bundle) through the Externalizer into a private spool file. The upstream
 * gets nothing until every attachment has been stored and checked, and then a body with a known
 * length. Undefined when the client went away (nothing to answer, nothing kept); a refusal
 * rejects, with the blobs and the spool file already removed.
 */
export async function spoolExternalized(
  body: Readable,
  res: ServerResponse,
  dir: string,
  maxBytes: number,
  opts: ExternalizeOptions,
): Promise<Spooled | undefined> {
  const ext = new Externalizer(opts);
  const spooled = await spoolThrough(body, res, dir, maxBytes, ext, 'body');
  return spooled && { ...spooled, blobs: ext.blobs, rootType: ext.rootType, rootSecurityContext: ext.rootSecurityContext };
}

/**
 * Reads a body through `check` (which passes it on or fails) into a private spool file: the
 * upstream gets nothing until all of it passed, then a body of known length. Undefined when the
 * client went away; a refusal rejects with the file already removed.
 */
export async function spoolThrough(
  body: Readable,
  res: ServerResponse,
  dir: string,
  maxBytes: number,
  check: Transform,
  kind = 'checked',
): Promise<{ readonly file: string; readonly size: number } | undefined> {
  const file = join(dir, `fbg-${kind}-${randomUUID()}.json`);
  const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  res.once('close', onClose);
  try {
    await pipeline(body, new SizeLimit(maxBytes), check, out, { signal: abort.signal });
    return { file, size: out.bytesWritten };
  } catch (err) {
    await unlink(file).catch(() => undefined);
    if (abort.signal.aborted) return undefined;
    throw err;
  } finally {
    res.off('close', onClose);
  }
}
