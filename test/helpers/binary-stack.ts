// What a test of the binary plane through the running gateway needs: Medplum's router upstream,
// a JWKS, the gateway itself, content of known types, and ways to see what reached the upstream.
import { createHash, randomBytes } from 'node:crypto';
import { crc32, deflateSync } from 'node:zlib';
import type { Test } from 'tap';
import type { FhirUpstream } from '../../src/demo/fhir-upstream.js';
import { findBlobRef, type BlobRef } from '../../src/fhir/blob-reference.js';
import { makeKey, mintToken, startJwksServer } from './auth.js';
import { PDF } from './content.js';
import { startTestGateway, type TestGateway } from './gateway.js';
import { startUpstream } from './upstream.js';

export { PDF, PNG } from './content.js';
export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * A well-formed PNG (IHDR, IDAT, IEND, every CRC right) of at least `minBytes`: a 1024-pixel-wide
 * RGB image of random pixels, stored uncompressed so its size is what was asked for.
 */
export function pngOfAtLeast(minBytes: number): Buffer {
  const width = 1024;
  const row = 1 + 3 * width;
  const height = Math.max(1, Math.ceil(minBytes / row));
  const pixels = randomBytes(row * height);
  for (let y = 0; y < height; y++) pixels[y * row] = 0; // filter type None on every scanline
  const chunk = (type: string, data: Buffer): Buffer => {
    const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    typed.copy(out, 4);
    out.writeUInt32BE(crc32(typed), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8 bits per sample, truecolour, deflate, adaptive filtering, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(pixels, { level: 0 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

export interface Stack {
  gw: TestGateway;
  up: FhirUpstream;
  /** What the gateway calls its upstream: `up`, or a shim in front of it. */
  upstream: string;
  auth: Record<string, string>;
  /** The JWKS's signing key (for tokens with other claims). */
  key: Awaited<ReturnType<typeof makeKey>>;
  /** Authorization headers for a token with these scopes (and launch patient), from the stack's own key. */
  as: (scope: string, patient?: string) => Promise<Record<string, string>>;
}

/**
 * Upstream (Medplum's router), JWKS and the gateway with `config` merged over the test baseline; a
 * token allowed to read and write. `shim`: a server put between the gateway and the upstream.
 */
export async function stack(t: Test, config: Record<string, unknown> = {}, shim?: (up: FhirUpstream) => Promise<string>): Promise<Stack> {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const upstream = shim ? await shim(up) : up.url;
  const gw = await startTestGateway(t, { upstream, jwksUri: jwks.url, config });
  const as = async (scope: string, patient?: string) => ({
    authorization: `Bearer ${await mintToken(key, { claims: { scope, ...(patient ? { patient } : {}) } })}`,
  });
  return { gw, up, upstream, key, auth: await as('user/*.cruds fhir.write'), as };
}

export async function upload(
  s: Stack,
  body: Buffer,
  contentType: string,
  headers: Record<string, string> = {},
  method = 'POST',
  path = '/Binary',
): Promise<Response> {
  return fetch(`${s.gw.base}${path}`, { method, headers: { ...s.auth, 'content-type': contentType, ...headers }, body });
}

/** The Binary id a create answered with (from its Location). */
export const createdId = (r: Response): string => (r.headers.get('location') ?? '').split('/')[5];

/** The stable error code of an OperationOutcome answer. */
export const code = async (r: Response): Promise<string> =>
  ((await r.json()) as { issue: { details: { coding: { code: string }[] } }[] }).issue[0].details.coding[0].code;

/** What the upstream itself holds for a Binary (read around the gateway). */
export const upstreamBinary = async (s: Stack, id: string): Promise<Record<string, unknown>> =>
  (await fetch(`${s.up.url}/Binary/${id}`, { headers: { accept: 'application/fhir+json' } })).json() as Promise<Record<string, unknown>>;

/** The blob the upstream's Binary points at. */
export async function blobRefOf(s: Stack, id: string): Promise<BlobRef | undefined> {
  return findBlobRef(((await upstreamBinary(s, id))._data as { extension?: unknown } | undefined)?.extension);
}

/** A PDF Binary (70 kB, `headers` added) uploaded through the gateway: its id and the blob its bytes went to. */
export async function uploadPdf(s: Stack, headers: Record<string, string> = {}): Promise<{ id: string; blob: string }> {
  const r = await upload(s, PDF(70_000), 'application/pdf', headers);
  await r.arrayBuffer();
  const id = createdId(r);
  return { id, blob: (await blobRefOf(s, id))!.id };
}

/** Writes of a Binary the upstream has seen (the gateway's creates and updates). */
export const binaryPosts = (s: Stack): number => s.up.requests.filter((r) => r.url.startsWith('/fhir/Binary') && r.method !== 'GET').length;
