import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { GatewayError } from '../errors/catalogue.js';

/** The scheme's version (`sv`): a URL of another version is refused, never read by guesswork. */
export const SIGNED_VERSION = '2026-12-01';

/**
 * What a signed URL says, under Azure SAS's parameter names where one fits (docs/signed-urls.md):
 * `sv` version, `sr` resource kind (`b`: one blob), `sp` permissions, `st`/`se` start and expiry,
 * `sip` client address or range, `spr` protocols, `si` stored policy, `rsct`/`rscd` the answer's
 * Content-Type and Content-Disposition, `skid` the key that signed it. `path` is the URL's path
 * below the FHIR base (`_file/DocumentReference/123/{blob}`), not a parameter.
 */
export interface SignedFields {
  readonly path: string;
  readonly sv: string;
  readonly sr: 'b';
  readonly sp: Permissions;
  readonly st: string;
  readonly se: string;
  readonly sip?: string | undefined;
  readonly spr: 'https' | 'https,http';
  readonly si?: string | undefined;
  readonly rsct?: string | undefined;
  readonly rscd?: string | undefined;
  readonly skid: string;
  /** A write URL's attachment (`$binary-access-write`'s `path`); absent on read URLs. */
  readonly spath?: string | undefined;
  /** A write URL's resource version: it replaces the content of that version only (so it is used once). */
  readonly svid?: string | undefined;
  /**
   * A read URL's content: its SHA-256 (base64url), as the resource held it at issue. The blob
   * served must have it — a store whose content was swapped under the URL serves nothing.
   */
  readonly shash?: string | undefined;
}

export type Permissions = 'r' | 'w' | 'rw';

/** The parameters in the order URLs carry them (`sig` last). */
const ORDER = ['sv', 'sr', 'sp', 'st', 'se', 'sip', 'spr', 'si', 'rsct', 'rscd', 'skid', 'shash', 'spath', 'svid'] as const;
const REQUIRED = ['sv', 'sr', 'sp', 'st', 'se', 'spr', 'skid', 'sig'] as const;
const KNOWN: ReadonlySet<string> = new Set([...ORDER, 'sig']);
/** C0 and C1 controls and DEL: the canonical string separates fields with a newline, so no field may hold one. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
export const SIGNED_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;
const SIG = /^[A-Za-z0-9_-]{43}$/;
const SHASH = SIG;
const MAX_VALUE = 512;

/**
 * The string the signature covers: a fixed first line, then every field on its own line in a
 * fixed order, an absent one as an empty line. No field can hold a newline (controls are
 * refused) and none can be present but empty (parseSigned refuses it), so no two URLs share a
 * canonical string.
 */
export function canonical(f: SignedFields): string {
  return [
    'fhir-binary-gateway signed URL',
    f.sv,
    f.sr,
    f.path,
    f.sp,
    f.st,
    f.se,
    f.sip ?? '',
    f.spr,
    f.si ?? '',
    f.rsct ?? '',
    f.rscd ?? '',
    f.skid,
    // Write URLs: the attachment and version they write; read URLs: the content they read.
    ...(f.sp === 'w' ? [f.spath ?? '', f.svid ?? ''] : [f.shash ?? '']),
  ].join('\n');
}

/** HMAC-SHA256 of the canonical string, base64url (43 characters). */
export function signature(f: SignedFields, key: Buffer): string {
  return createHmac('sha256', key).update(canonical(f), 'utf8').digest('base64url');
}

/** The query string of a signed URL: its fields in order, then `sig`. */
export function signedQuery(f: SignedFields, sig: string): string {
  const parts: string[] = [];
  for (const name of ORDER) {
    const v = f[name];
    if (v !== undefined) parts.push(`${name}=${encodeURIComponent(v)}`);
  }
  parts.push(`sig=${sig}`);
  return parts.join('&');
}

const invalid = (detail: string) => new GatewayError('SIGNATURE_INVALID', detail);

/**
 * A signed URL's fields and signature, read strictly: every parameter known, none twice, none
 * with a control character, each of its form. Nothing is trusted until `verifySignature`.
 */
export function parseSigned(path: string, query: string): { fields: SignedFields; sig: string } {
  const got = new Map<string, string>();
  for (const [name, value] of new URLSearchParams(query)) {
    if (!KNOWN.has(name)) throw invalid(`unknown parameter '${name.slice(0, 32).replace(CONTROL, '?')}'`);
    if (got.has(name)) throw invalid(`parameter '${name}' appears twice`);
    // Empty is malformed too: an absent field signs as an empty line, so `&sip=` must not pass for none.
    if (value === '' || value.length > MAX_VALUE || CONTROL.test(value)) throw invalid(`parameter '${name}' is malformed`);
    got.set(name, value);
  }
  for (const name of REQUIRED) if (!got.has(name)) throw invalid(`parameter '${name}' is missing`);
  if (CONTROL.test(path)) throw invalid('the path is malformed');
  const v = (name: string) => got.get(name);
  if (v('sv') !== SIGNED_VERSION) throw invalid(`signed version '${v('sv')!.slice(0, 32)}' is not ${SIGNED_VERSION}`);
  if (v('sr') !== 'b') throw invalid("'sr' must be b (one blob)");
  const sp = v('sp');
  if (sp !== 'r' && sp !== 'w' && sp !== 'rw') throw invalid("'sp' must be r, w or rw");
  if (!SIGNED_TIME.test(v('st')!) || !SIGNED_TIME.test(v('se')!)) throw invalid("'st' and 'se' must be times like 2026-12-06T10:00:00Z");
  const spr = v('spr');
  if (spr !== 'https' && spr !== 'https,http') throw invalid("'spr' must be https or https,http");
  if (!KEY_ID.test(v('skid')!)) throw invalid("'skid' is malformed");
  if (!SIG.test(v('sig')!)) throw invalid("'sig' is malformed");
  // A read URL names its content by hash; a write URL has none (its content is still to come).
  if (sp === 'w' ? got.has('shash') : !SHASH.test(v('shash') ?? '')) throw invalid("'shash' is missing or malformed");
  return {
    fields: {
      path,
      sv: SIGNED_VERSION,
      sr: 'b',
      sp,
      st: v('st')!,
      se: v('se')!,
      sip: v('sip'),
      spr,
      si: v('si'),
      rsct: v('rsct'),
      rscd: v('rscd'),
      skid: v('skid')!,
      shash: v('shash'),
      spath: v('spath'),
      svid: v('svid'),
    },
    sig: v('sig')!,
  };
}

/** Throws SIGNATURE_INVALID unless `sig` is the signature of `fields` by the key it names (compared in constant time). */
export function verifySignature(fields: SignedFields, sig: string, keys: ReadonlyMap<string, Buffer>): void {
  const key = keys.get(fields.skid);
  // An unknown key (never ours, or removed) and a wrong signature are one answer: which key ids exist is not told.
  const expected = Buffer.from(signature(fields, key ?? UNKNOWN_KEY), 'utf8');
  const given = Buffer.from(sig, 'utf8');
  if (!timingSafeEqual(expected, given) || !key) throw invalid('the signature does not match, or its key is not known');
}

/** Verified against when the key is unknown, so that answer takes as long as a wrong signature. */
const UNKNOWN_KEY = Buffer.alloc(32);

/**
 * A signed URL's name in the audit trail: the first 16 hex digits of its signature's SHA-256. The
 * record of the issue and the record of each follow carry the same one, so a follow is tied to
 * whom the URL was issued; it cannot be turned back into the signature, so it follows nothing.
 */
export function urlIdOf(sig: string): string {
  return createHash('sha256').update(sig).digest('hex').slice(0, 16);
}

/** SHA-256 as a read URL carries it (`shash`): base64url of the digest, from its lowercase hex. */
export function shashOf(sha256Hex: string): string {
  return Buffer.from(sha256Hex, 'hex').toString('base64url');
}

/** `shash` back to lowercase hex, as blob records and references hold it. */
export function sha256OfShash(shash: string): string {
  return Buffer.from(shash, 'base64url').toString('hex');
}
