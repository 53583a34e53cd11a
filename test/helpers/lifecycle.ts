// The blob lifecycle (issue 13) as its tests set it up: a document whose PDF the gateway stored,
// a blob's record edited on disk (what a crash, a lost answer or time leaves behind), the options
// of a sweep, the operator's admin API, and servers put in the upstream's place. Written once so
// that each test reads as what it changes, not as the setup it shares.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { AuditRecord } from '../../src/audit/record.js';
import { HttpPendingLookup, type PendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep, type SweepOptions, type SweepReport } from '../../src/binary/sweeper.js';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { mintToken } from './auth.js';
import { PDF, type Stack } from './binary-stack.js';
import { eventually } from './poll.js';
import { defaultRetention, midHour } from './retention.js';

type Teardown = { teardown(fn: () => unknown): void };

const HOUR = 3_600_000;

/** A temp directory removed when the test ends. */
export function tempDir(t: Teardown, prefix = 'fbg-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---- A document with a blob --------------------------------------------------------------------

/**
 * A DocumentReference with one inline PDF attachment of `bytes` random bytes (big enough for the
 * gateway to store it as a blob); `fields` go in beside `status` (category, identifier, subject).
 */
export const pdfDocument = (fields: Record<string, unknown> = {}, bytes = 70_000): Record<string, unknown> => ({
  resourceType: 'DocumentReference',
  status: 'current',
  ...fields,
  content: [{ attachment: { contentType: 'application/pdf', data: PDF(bytes).toString('base64') } }],
});

/** `resource` sent as FHIR JSON through the gateway as the stack's writer: `method` to `path` below the FHIR base. */
export const sendResource = (s: Stack, method: 'POST' | 'PUT', path: string, resource: unknown, headers: Record<string, string> = {}) =>
  fetch(`${s.gw.base}${path}`, {
    method,
    headers: { ...s.auth, 'content-type': 'application/fhir+json', ...headers },
    body: JSON.stringify(resource),
  });

/** A resource read through the gateway with links for its stored content (as past the budget), parsed. */
export const readLinked = async (s: Stack, path: string): Promise<Record<string, any>> =>
  (await (await fetch(`${s.gw.base}${path}?_inflate=false`, { headers: { ...s.auth, accept: 'application/fhir+json' } })).json()) as Record<
    string,
    any
  >;

/** POSTs `resource` (a DocumentReference by default) through the gateway as the stack's writer. */
export const postDocument = (s: Stack, resource: Record<string, unknown> = pdfDocument(), headers: Record<string, string> = {}) =>
  fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json', ...headers },
    body: JSON.stringify(resource),
  });

/** The blob DocumentReference/`id`'s first attachment points at, as the upstream holds it (read around the gateway). */
export async function documentBlob(s: Stack, id: string): Promise<string> {
  const held = (await (await fetch(`${s.up.url}/DocumentReference/${id}`)).json()) as {
    content: { attachment: { _data: { extension: unknown } } }[];
  };
  return findBlobRef(held.content[0].attachment._data.extension)!.id;
}

/**
 * A DocumentReference with a 70 kB PDF created through the gateway (`fields` as in pdfDocument),
 * and the blob its PDF went to. With `t`, the create's 201 is asserted first.
 */
export async function createDocument(s: Stack, fields: Record<string, unknown> = {}, t?: Test): Promise<{ id: string; blob: string }> {
  const r = await postDocument(s, pdfDocument(fields));
  t?.equal(r.status, 201);
  const id = ((await r.json()) as { id: string }).id;
  return { id, blob: await documentBlob(s, id) };
}

/**
 * PUTs the next version of DocumentReference/`id` through the gateway (`fields`: its content and
 * category; `status: current`), asserts the 200 and reads the answer to its end.
 */
export async function updateDocument(t: Test, s: Stack, id: string, fields: Record<string, unknown>): Promise<void> {
  const r = await fetch(`${s.gw.base}/DocumentReference/${id}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'DocumentReference', id, status: 'current', ...fields }),
  });
  t.equal(r.status, 200);
  await r.arrayBuffer();
}

/** The audit record of exchange `reqId` (its x-request-id), once the gateway has written it. */
export const auditOf = (s: Stack, reqId: string): Promise<AuditRecord> =>
  eventually(() => s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === reqId) as AuditRecord | undefined, 'the audit record');

/**
 * The blob exchange `reqId` stored for a body the upstream created nothing from (a conditional
 * create that matched): asserts one was written and deleted in that same exchange, from its audit
 * record; resolves with the record and the blob.
 */
export async function discardedBlob(t: Test, s: Stack, reqId: string): Promise<{ rec: AuditRecord; written: string | undefined }> {
  const rec = await auditOf(s, reqId);
  const written = rec.what.blobs.find((b) => b.action === 'write')?.blob;
  t.ok(written, 'a blob was stored for the body');
  t.ok(
    rec.what.blobs.some((b) => b.action === 'delete' && b.blob === written),
    'deleted in the same exchange',
  );
  return { rec, written };
}

// ---- A blob's record on disk -------------------------------------------------------------------

/** Where the filesystem store in `dir` keeps blob `id`'s record: `dir/id[0:2]/id[2:4]/id.json`. */
export const recordPath = (dir: string, id: string): string => join(dir, id.slice(0, 2), id.slice(2, 4), `${id}.json`);

/** Blob `id`'s record as the filesystem store in `dir` holds it. */
export const readRecord = (dir: string, id: string): Record<string, unknown> =>
  JSON.parse(readFileSync(recordPath(dir, id), 'utf8')) as Record<string, unknown>;

/**
 * Rewrites blob `id`'s record with `over` changed, around the store: how a test puts a blob in
 * the state a crash, a lost answer or the passing of time leaves it in (no code path sets those).
 */
export function editRecord(dir: string, id: string, over: Record<string, unknown>): void {
  writeFileSync(recordPath(dir, id), JSON.stringify({ ...readRecord(dir, id), ...over }));
}

/** An ISO time `hours` ago (negative: that many hours ahead): a record's createdAt or updatedAt aged, a retainUntil ahead. */
export const hoursAgo = (hours: number): string => new Date(Date.now() - hours * HOUR).toISOString();

// ---- A sweep -----------------------------------------------------------------------------------

/** The upstream as a sweep asks it, over HTTP at `base`. */
export const lookupAt = (base: string, timeoutMs = 5000): HttpPendingLookup =>
  new HttpPendingLookup({ base, timeoutMs, rejectUnauthorized: true });

/**
 * What a test's sweep runs with: `store` (or the filesystem store in that directory), the upstream
 * at `base`, a spool directory of its own (removed when the test ends), the default classes and a
 * clock in the middle of the current hour (a sweep stops in its period's last seconds: the real
 * clock would flake there). `over` is what the test varies: a later clock, other classes, a holder.
 */
export function sweepOptions(t: Teardown, store: BlobStore | string, base: string, over: Partial<SweepOptions> = {}): SweepOptions {
  return {
    store: typeof store === 'string' ? new FilesystemBlobStore({ directory: store }) : store,
    upstream: lookupAt(base),
    spoolDir: over.spoolDir ?? tempDir(t, 'fbg-sweep-spool-'),
    retention: defaultRetention(),
    dryRun: false,
    holder: 'test',
    now: () => midHour(),
    ...over,
  };
}

/** The sweep of `opts` with its clock at `at`: the same store and spool, days on. */
export const sweepAt = (opts: SweepOptions, at: Date): Promise<SweepReport> => sweep({ ...opts, now: () => at });

/**
 * An upstream for which no resource refers to anything (every pending blob an orphan), counting
 * the questions in `asked`; a linked blob's check is not expected of it.
 */
export function knowsNothing(): PendingLookup & { asked: number } {
  const lookup = {
    asked: 0,
    findReference: async () => {
      lookup.asked++;
      return undefined;
    },
    currentReference: () => Promise.reject(new Error('not asked')),
  };
  return lookup;
}

// ---- The admin API -----------------------------------------------------------------------------

/** Authorization headers of an operator (scope `gateway/admin`, sub `ops-1` unless `claims` says otherwise), from the stack's key. */
export async function adminHeaders(
  s: Pick<Stack, 'key'>,
  claims: Record<string, unknown> = { sub: 'ops-1' },
): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await mintToken(s.key, { claims: { scope: 'gateway/admin', ...claims } })}` };
}

/** `fetch` of the admin API on the main listener (`path` under `/_admin`), with `admin`'s headers under the call's own. */
export const adminApi =
  (s: Stack, admin: Record<string, string>) =>
  (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${s.gw.url}/_admin${path}`, { ...init, headers: { ...admin, ...(init.headers as Record<string, string>) } });

// ---- Servers in the upstream's place ----------------------------------------------------------

/** Serves `handler` on a free port of 127.0.0.1 until the test ends; resolves with its URL and `pathname`. */
export async function serve(t: Teardown, handler: RequestListener, pathname = ''): Promise<string> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${pathname}`;
}

/** Passes the upstream's answer back as it came. */
export function passOn(answer: IncomingMessage, res: ServerResponse): void {
  res.writeHead(answer.statusCode ?? 502, answer.headers);
  answer.pipe(res);
}

/** All of an answer's body. */
export function bodyOf(answer: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    answer.on('data', (c: Buffer) => parts.push(c));
    answer.on('end', () => resolve(Buffer.concat(parts)));
    answer.on('error', reject);
  });
}

/**
 * What a relay does with one request: nothing special (undefined: relayed, its answer passed on),
 * `'answered'` (the shim answered it itself), or relay it to `path` and/or hand the upstream's
 * answer to `answer` (to delay, page, cut or drop it).
 */
export type Alter = (
  req: IncomingMessage,
  res: ServerResponse,
) => 'answered' | { path?: string; answer?: (answer: IncomingMessage, res: ServerResponse) => void } | undefined;

/**
 * A server in front of the upstream at `target` (its base URL) that relays every request whole
 * and passes its answer back, except where `alter` says otherwise: the upstream misbehaving in
 * one way a test needs (no history, a lost or late answer). Resolves with the base URL to use in
 * the upstream's place; closed when the test ends.
 */
export async function relay(t: Teardown, target: string, alter: Alter = () => undefined): Promise<string> {
  const upstream = new URL(target);
  return serve(
    t,
    (req, res) => {
      const how = alter(req, res);
      if (how === 'answered') return;
      const fwd = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          path: how?.path ?? req.url,
          method: req.method,
          headers: { ...req.headers, host: upstream.host },
        },
        (answer) => (how?.answer ?? passOn)(answer, res),
      );
      req.pipe(fwd);
    },
    upstream.pathname,
  );
}
