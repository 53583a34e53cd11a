import { randomBytes } from 'node:crypto';
import { isDownloadName } from '../lib/download-name.js';
import {
  blobUnreadable,
  CLAIM_NOTE_MAX,
  type BlobInfo,
  type BlobState,
  type BlobUpload,
  type ChunkDigests,
  type Claim,
  type MetaPatch,
  type PutMeta,
} from './blob-store.js';

export { isBlobId } from '../lib/blob-id.js';

/**
 * The metadata record every driver keeps beside a blob (a `.json` file, an S3 object, an Azure
 * blob), in one format so a retention sweeper or a migration reads them all the same way.
 * Written only once the content is complete: a record means the bytes are all there.
 */
export const META_VERSION = 1;

/** SHA-256 of no bytes. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** 128 random bits, lowercase hex: unguessable, URL-safe, and evenly spread for sharding. */
export function newBlobId(): string {
  return randomBytes(16).toString('hex');
}

export function newInfo(
  id: string,
  digest: { size: number; sha256: string; sha1: string; chunks?: ChunkDigests },
  meta: PutMeta,
  now = new Date(),
): BlobInfo {
  const at = now.toISOString();
  return {
    id,
    size: digest.size,
    sha256: digest.sha256,
    sha1: digest.sha1,
    contentType: meta.contentType,
    state: meta.state ?? 'pending',
    owner: meta.owner,
    createdAt: at,
    updatedAt: at,
    ...(digest.chunks ? { chunks: digest.chunks } : {}),
    ...(meta.intent ? { intent: meta.intent } : {}),
    ...(meta.purpose ? { purpose: meta.purpose } : {}),
    ...(meta.upload ? { upload: uploadOf(meta.upload) } : {}),
  };
}

export function patchInfo(info: BlobInfo, patch: MetaPatch, now = new Date()): BlobInfo {
  const { retention: _r, retainUntil: _u, ...rest } = info;
  const unretained = patch.retention === null ? rest : info;
  const { intent: _i, ...withoutIntent } = unretained;
  const kept = patch.intent === null ? withoutIntent : unretained;
  return {
    ...kept,
    ...(patch.retention ? { retention: patch.retention.name, retainUntil: patch.retention.until } : {}),
    ...(patch.state !== undefined ? { state: patch.state } : {}),
    ...(patch.owner !== undefined ? { owner: patch.owner } : {}),
    ...(patch.contentType !== undefined ? { contentType: patch.contentType } : {}),
    ...(patch.intent !== undefined && patch.intent !== null ? { intent: patch.intent } : {}),
    updatedAt: now.toISOString(),
  };
}

/** Driver-specific facts kept with the record (e.g. the encryption key id), opaque to callers. */
export type DriverMeta = Readonly<Record<string, string | number>>;

export function serializeMeta(info: BlobInfo, driver: DriverMeta = {}): string {
  const { upload, ...rest } = info;
  return JSON.stringify({
    v: META_VERSION,
    ...rest,
    ...(upload ? { upload: storedUpload(upload) } : {}),
    owner: info.owner ?? null,
    driver,
  });
}

const STATES: readonly BlobState[] = ['pending', 'linked', 'unlinked', 'quarantined'];
/** `Type` or `Type/id`, as FHIR spells them. */
export const INTENT = /^[A-Z][A-Za-z]{0,63}(\/[A-Za-z0-9\-.]{1,64})?$/;
/** An upload's purpose, and a retention class's name in a record. */
export const PURPOSE = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * Parses a record, refusing anything malformed: a corrupt record must not serve another blob's
 * bytes. A record that cannot be read is BLOB_UNREADABLE (permanent, not a store outage a client
 * should retry).
 */
export function parseMeta(text: string, expectedId: string): { info: BlobInfo; driver: DriverMeta } {
  try {
    return parseRecord(text, expectedId);
  } catch (err) {
    throw blobUnreadable(`blob ${expectedId}: its metadata record cannot be read (${(err as Error).message.slice(0, 120)})`);
  }
}

/**
 * The records of `ids` for a listing page: a record deleted since the listing is left out; one
 * that cannot be read is named in `unreadable` (for the sweeper and scrub to report), not fatal.
 */
export async function readRecords(
  ids: readonly string[],
  read: (id: string) => Promise<{ info: BlobInfo } | undefined>,
): Promise<{ items: BlobInfo[]; unreadable: string[] }> {
  const items: BlobInfo[] = [];
  const unreadable: string[] = [];
  const records = await Promise.all(
    ids.map((id) =>
      read(id).catch((err: unknown) => {
        if ((err as { code?: unknown }).code !== 'BLOB_UNREADABLE') throw err;
        unreadable.push(id);
        return undefined;
      }),
    ),
  );
  for (const r of records) if (r) items.push(r.info);
  return { items, unreadable };
}

function parseRecord(text: string, expectedId: string): { info: BlobInfo; driver: DriverMeta } {
  const o = JSON.parse(text) as Record<string, unknown>;
  const str = (k: string): string => {
    const v = o[k];
    if (typeof v !== 'string') throw new Error(`blob metadata: ${k} is not a string`);
    return v;
  };
  if (o.v !== META_VERSION) throw new Error(`blob metadata: unknown version ${String(o.v)}`);
  const id = str('id');
  if (id !== expectedId) throw new Error('blob metadata: id does not match');
  const size = o.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new Error('blob metadata: bad size');
  // Empty content has one SHA-256: a record cut to size 0 cannot pass for a blob that had bytes.
  if (size === 0 && o.sha256 !== EMPTY_SHA256) throw new Error('blob metadata: size 0 with the digest of content');
  const state = str('state') as BlobState;
  if (!STATES.includes(state)) throw new Error('blob metadata: bad state');
  const owner = o.owner;
  if (owner !== null && typeof owner !== 'string') throw new Error('blob metadata: bad owner');
  const driver = (o.driver ?? {}) as DriverMeta;
  const chunks = o.chunks as Partial<ChunkDigests> | undefined;
  const intent = o.intent;
  if (intent !== undefined && (typeof intent !== 'string' || !INTENT.test(intent))) throw new Error('blob metadata: bad intent');
  const optional = (k: 'purpose' | 'retention' | 'retainUntil', ok: (v: string) => boolean): string | undefined => {
    const v = o[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !ok(v)) throw new Error(`blob metadata: bad ${k}`);
    return v;
  };
  const purpose = optional('purpose', (v) => PURPOSE.test(v));
  const retention = optional('retention', (v) => PURPOSE.test(v));
  const retainUntil = optional('retainUntil', (v) => !Number.isNaN(Date.parse(v)));
  // Half a retention is no retention: an unlinked blob without both would never expire, or expire unclassed.
  if ((retention === undefined) !== (retainUntil === undefined)) throw new Error('blob metadata: retention without retainUntil');
  const upload = o.upload as (Partial<BlobUpload> & { name?: unknown }) | undefined;
  if (
    upload !== undefined &&
    (typeof upload !== 'object' ||
      upload === null ||
      typeof upload.by !== 'string' ||
      upload.by.length === 0 ||
      upload.by.length > 512 ||
      typeof upload.for !== 'string' ||
      !INTENT.test(upload.for) ||
      !upload.for.includes('/') ||
      (upload.override !== undefined && upload.override !== true) ||
      (upload.filename !== undefined && (typeof upload.filename !== 'string' || !storedName(upload.filename))) ||
      (upload.name !== undefined && (typeof upload.name !== 'string' || !isDownloadName(upload.name))) ||
      (upload.ip !== undefined && (typeof upload.ip !== 'string' || !UPLOAD_IP.test(upload.ip))))
  )
    throw new Error('blob metadata: bad upload');
  if (
    chunks !== undefined &&
    (typeof chunks !== 'object' || chunks === null || typeof chunks.size !== 'number' || typeof chunks.crc32 !== 'string')
  ) {
    throw new Error('blob metadata: bad chunks');
  }
  return {
    info: {
      id,
      size,
      sha256: str('sha256'),
      sha1: str('sha1'),
      contentType: str('contentType'),
      state,
      owner: owner ?? undefined,
      createdAt: str('createdAt'),
      updatedAt: str('updatedAt'),
      ...(chunks ? { chunks: { size: chunks.size, crc32: chunks.crc32 } as ChunkDigests } : {}),
      ...(intent ? { intent } : {}),
      ...(purpose ? { purpose } : {}),
      ...(retention && retainUntil ? { retention, retainUntil } : {}),
      ...(upload
        ? { upload: uploadOf({ ...(upload as BlobUpload), ...(typeof upload.name === 'string' ? { filename: upload.name } : {}) }) }
        : {}),
    },
    driver,
  };
}

/** Checks an inclusive range against a size; drivers call it so a bad range never reaches a read. */
export function checkRange(range: { start: number; end: number } | undefined, size: number): void {
  if (!range) return;
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end >= size) {
    throw new RangeError(`byte range ${start}-${end} is not within 0-${size - 1}`);
  }
}

/** A claim's record, as every driver writes it (BlobStore.claim); a note longer than CLAIM_NOTE_MAX is refused. */
export function claimRecord(name: string, holder: string, note?: string): string {
  if (note !== undefined && note.length > CLAIM_NOTE_MAX) throw new Error(`a claim's note is longer than ${CLAIM_NOTE_MAX} characters`);
  return JSON.stringify({ name, holder, at: new Date().toISOString(), ...(note !== undefined ? { note } : {}) });
}

/** A claim's record (BlobStore.claim), or undefined when it cannot be read. */
export function parseClaim(text: string | undefined, name: string): Claim | undefined {
  try {
    const o = JSON.parse(text ?? '') as Record<string, unknown>;
    if (o.name !== name || typeof o.holder !== 'string' || typeof o.at !== 'string' || Number.isNaN(Date.parse(o.at))) return undefined;
    if (o.note !== undefined && (typeof o.note !== 'string' || o.note.length > CLAIM_NOTE_MAX)) return undefined;
    return { name, holder: o.holder, at: o.at, ...(o.note !== undefined ? { note: o.note } : {}) };
  } catch {
    return undefined;
  }
}

/**
 * Download names as records held them before names in any script: a gateway of that time reads
 * a record only if its `filename` fits this, so a name that does not is stored as `name`, which
 * such a gateway passes over (a rollback loses the name, not the blob).
 */
const LEGACY_NAME = /^[\w .-]{1,128}$/;
const storedName = (name: string): boolean => LEGACY_NAME.test(name) || isDownloadName(name);

/** The upload as a record stores it (see LEGACY_NAME). */
function storedUpload(u: BlobUpload): Record<string, unknown> {
  const { filename, ...rest } = uploadOf(u);
  if (filename === undefined) return rest;
  return LEGACY_NAME.test(filename) ? { ...rest, filename } : { ...rest, name: filename };
}

/** An upload's address or CIDR range. */
const UPLOAD_IP = /^[0-9A-Fa-f:.]{2,45}(?:\/\d{1,3})?$/;

/** A record's upload, field by field (nothing else a record might carry comes along). */
function uploadOf(u: BlobUpload): BlobUpload {
  return {
    by: u.by,
    for: u.for,
    ...(u.override ? { override: true as const } : {}),
    ...(u.filename !== undefined ? { filename: u.filename } : {}),
    ...(u.ip !== undefined ? { ip: u.ip } : {}),
  };
}
