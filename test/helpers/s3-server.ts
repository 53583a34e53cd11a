// An in-process S3 for tests: @20minutes/s3rver, which verifies SigV4 request signatures
// (lib/middleware/authentication.js recomputes the signature from its key registry and refuses a
// mismatch with SignatureDoesNotMatch; requests with no Authorization header at all are let through
// anonymously, and payload hashes are not checked against the body). It keeps objects as files,
// so what it holds can be read straight off the disk: that is the most honest residue there is.
//
// s3rver 4.0.4 falls short of S3 in six ways that this file makes up for, each documented below
// and each narrowed to exactly the requests it concerns: it answers AbortMultipartUpload with 405;
// it cannot verify the signature of a bucket-level request the SDK sends as `/bucket/?…`
// (ListObjectsV2), nor of one whose query holds `!'()*` (its canonical query is not RFC 3986); its ListObjectsV2 continuation tokens use single DES, which Node 20's OpenSSL 3
// refuses; it answers `Range: bytes=0-0` with the whole object; and it ignores `If-None-Match: *`
// on PutObject (S3's conditional write, since 2024).
import { readdirSync, readFileSync, rmSync, statSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Test } from 'tap';
import type * as NodeCrypto from 'node:crypto';

const require = createRequire(import.meta.url);

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  headers: Record<string, string | string[] | undefined>;
  status: number;
  body: unknown;
  state: { account?: unknown };
  length: number;
  set(field: string, value: string): void;
  response: { get(field: string): string };
}
type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

/** The part of s3rver (a Koa app) these tests use; it ships no type declarations. */
export interface S3rver {
  readonly store: { existsObject(bucket: string, key: string): Promise<boolean> };
  middleware: Middleware[];
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}
const S3rverClass = require('@20minutes/s3rver') as new (options: Record<string, unknown>) => S3rver;
const S3Error = require('@20minutes/s3rver/lib/models/error') as new (code: string, message: string) => Error;
const sigV4 = require('@20minutes/s3rver/lib/signature/v4') as {
  getStringToSign: (canonical: { uri: string; headers: object; querystring?: unknown }, request: unknown) => string;
};

/** s3rver's built-in account (lib/models/account.js: DUMMY_ACCOUNT.createKeyPair('S3RVER', 'S3RVER')). */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/** A request as the server saw it, recorded once it was answered. */
export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string | string[] | undefined>>;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly status: number;
  /** s3rver accepted the request's signature (anonymous requests are not authenticated). */
  readonly authenticated: boolean;
}

export interface S3Server {
  readonly endpoint: string;
  readonly bucket: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  readonly server: S3rver;
  readonly dir: string;
  readonly requests: SeenRequest[];
  /** Every file s3rver holds (objects, their sidecars, in-progress multipart uploads), relative to dir, minus those present at start. */
  files(): string[];
  /** Stops listening (the port then refuses connections) and drops idle keep-alive connections; the files stay for inspection. */
  stop(): Promise<void>;
}

export async function startS3Server(t: Test, bucket = 'blobs'): Promise<S3Server> {
  useTripleDesForDes();
  signBucketPathsWithTheirSlash();
  const dir = mkdtempSync(join(tmpdir(), 'fbg-s3rver-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const server = new S3rverClass({
    address: '127.0.0.1',
    port: 0,
    directory: dir,
    silent: true,
    vhostBuckets: false,
    configureBuckets: [{ name: bucket }],
  });
  const requests: SeenRequest[] = [];
  // Koa composes its middleware when it starts listening, so these go in before run().
  server.middleware.unshift(recordRequests(requests), markTrailingSlash, abortMultipartUpload(dir), firstByteRange, conditionalPut(server));
  const { port } = await server.run();
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopped ??= server.close());
  t.teardown(stop);
  const initial = new Set(allFiles(dir));
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    credentials: S3RVER_CREDENTIALS,
    server,
    dir,
    requests,
    files: () => allFiles(dir).filter((f) => !initial.has(f)),
    stop,
  };
}

function allFiles(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((p) => statSync(join(dir, p)).isFile()).sort();
}

function recordRequests(requests: SeenRequest[]): Middleware {
  return async (ctx, next) => {
    let status = 500;
    try {
      await next();
      status = ctx.status;
    } catch (err) {
      status = (err as { status?: number }).status ?? 500;
      throw err;
    } finally {
      requests.push({
        method: ctx.method,
        path: ctx.path,
        query: { ...ctx.query },
        headers: { ...ctx.headers },
        status,
        authenticated: ctx.state.account !== undefined,
      });
    }
  };
}

/**
 * AbortMultipartUpload (DELETE /bucket/key?uploadId=…), which s3rver routes to a 405. It runs
 * behind s3rver's own routing, so the signature has been checked (and the bucket found) by the
 * time the 405 comes back; an unsigned request keeps its 405. The upload is removed the way
 * s3rver itself removes it on completion (lib/stores/filesystem.js putObjectMultipart).
 */
function abortMultipartUpload(dir: string): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      const uploadId = ctx.query.uploadId;
      if (
        ctx.method !== 'DELETE' ||
        typeof uploadId !== 'string' ||
        (err as { code?: string }).code !== 'MethodNotAllowed' ||
        !ctx.state.account
      ) {
        throw err;
      }
      const [bucket, ...key] = ctx.path.slice(1).split('/').map(decodeURIComponent);
      const uploadDir = join(dir, bucket, '._S3rver_uploads', uploadId);
      let storedKey: string | undefined;
      try {
        storedKey = /^[0-9a-f]{32}$/.test(uploadId) ? readFileSync(join(uploadDir, 'key'), 'utf8') : undefined;
      } catch {
        storedKey = undefined;
      }
      if (storedKey !== key.join('/')) {
        throw new S3Error(
          'NoSuchUpload',
          'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
        );
      }
      rmSync(uploadDir, { recursive: true, force: true });
      ctx.status = 204;
      ctx.body = null;
    }
  };
}

/**
 * PutObject with `If-None-Match: *`: S3 writes only if the key does not exist, answering 412
 * PreconditionFailed when it does and 409 ConditionalRequestConflict while another conditional
 * write of the key is in flight. Checked here, before s3rver's own handler checks the signature
 * (a test server: whether a key exists is no secret here); concurrent ones are serialized per key.
 */
function conditionalPut(server: S3rver): Middleware {
  const inFlight = new Set<string>();
  return async (ctx, next) => {
    if (ctx.method !== 'PUT' || ctx.headers['if-none-match'] !== '*' || ctx.query.uploadId !== undefined) return next();
    const [bucket, ...key] = ctx.path.slice(1).split('/').map(decodeURIComponent);
    const id = `${bucket}/${key.join('/')}`;
    if (inFlight.has(id)) {
      throw Object.assign(new S3Error('ConditionalRequestConflict', 'A conflicting conditional operation is in progress.'), {
        status: 409,
        expose: true,
      });
    }
    inFlight.add(id);
    try {
      if (await server.store.existsObject(bucket, key.join('/'))) {
        throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
      }
      await next();
    } finally {
      inFlight.delete(id);
    }
  };
}

let desPatched = false;

/**
 * s3rver encrypts ListObjectsV2 continuation tokens with single DES (lib/controllers/bucket.js),
 * which OpenSSL 3 only has in its legacy provider, so every truncated listing fails with a 500.
 * Three-key DES with K1 = K2 = K3 is single DES, byte for byte, and is in the default provider.
 * Only the 'des' algorithm, which would otherwise throw, is affected.
 */
function useTripleDesForDes(): void {
  if (desPatched) return;
  desPatched = true;
  const crypto = require('node:crypto') as typeof NodeCrypto;
  const { createCipheriv, createDecipheriv } = crypto;
  const triple = (key: Buffer): Buffer => Buffer.concat([key, key, key]);
  const swap = (algorithm: string, key: Buffer, rest: unknown[]): unknown[] =>
    algorithm === 'des' ? ['des-ede3-cbc', triple(key), ...rest] : [algorithm, key, ...rest];
  crypto.createCipheriv = ((algorithm: string, key: Buffer, ...rest: unknown[]) =>
    Reflect.apply(createCipheriv, crypto, swap(algorithm, key, rest))) as typeof createCipheriv;
  crypto.createDecipheriv = ((algorithm: string, key: Buffer, ...rest: unknown[]) =>
    Reflect.apply(createDecipheriv, crypto, swap(algorithm, key, rest))) as typeof createDecipheriv;
}

/** Requests (by their headers object, which s3rver hands to the signer) whose path is `/bucket/`. */
const trailingSlash = new WeakSet<object>();

const markTrailingSlash: Middleware = async (ctx, next) => {
  if (/^\/[^/]+\/$/.test(ctx.path)) trailingSlash.add(ctx.headers);
  await next();
};

let slashPatched = false;

/**
 * s3rver rebuilds the canonical URI from the bucket (and key) it routed to, so `/bucket/` becomes
 * `/bucket` and the signature the SDK computed over `/bucket/` never matches. Put the slash back
 * for exactly those requests; the signature is still checked, over the path that was sent.
 */
function signBucketPathsWithTheirSlash(): void {
  if (slashPatched) return;
  slashPatched = true;
  const { getStringToSign } = sigV4;
  sigV4.getStringToSign = (canonical, request) => {
    const uri = trailingSlash.has(canonical.headers) && !canonical.uri.endsWith('/') ? `${canonical.uri}/` : canonical.uri;
    return getStringToSign({ ...canonical, uri, querystring: rfc3986Query(canonical.querystring) }, request);
  };
}

const rfc3986 = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * SigV4's canonical query string encodes names and values by RFC 3986 (everything but
 * `A-Za-z0-9-_.~`); s3rver encodes them with encodeURIComponent (lib/middleware/authentication.js),
 * which leaves `!'()*` as they are. A presigned URL whose query holds one (RFC 8187's
 * `filename*=UTF-8''…` in response-content-disposition) fails s3rver's check though S3 accepts it:
 * re-encode the query the way SigV4 says, and sort it again.
 */
function rfc3986Query(querystring: unknown): unknown {
  if (typeof querystring !== 'string' || querystring === '') return querystring;
  return querystring
    .split('&')
    .map((pair) => {
      const at = pair.indexOf('=');
      return `${rfc3986(decodeURIComponent(pair.slice(0, at)))}=${rfc3986(decodeURIComponent(pair.slice(at + 1)))}`;
    })
    .sort()
    .join('&');
}

/**
 * s3rver reads the end of `bytes=0-0` as "no end" (lib/stores/filesystem.js: `options.end || Infinity`)
 * and streams the whole object under a 206. Cut the answer to the one byte that was asked for.
 */
const firstByteRange: Middleware = async (ctx, next) => {
  await next();
  if (ctx.method !== 'GET' || ctx.headers.range !== 'bytes=0-0' || ctx.status !== 206 || !(ctx.body instanceof Readable)) return;
  const whole = ctx.body;
  const size = /\/(\d+)$/.exec(ctx.response.get('Content-Range'))?.[1] ?? '*';
  ctx.body = Readable.from(
    (async function* () {
      // Leaving the loop destroys the file stream.
      for await (const chunk of whole) {
        yield (chunk as Buffer).subarray(0, 1);
        return;
      }
    })(),
  );
  ctx.length = 1;
  ctx.set('Content-Range', `bytes 0-0/${size}`);
};
