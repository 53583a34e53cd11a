import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { pipeline, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/types.js';
import { ContentCheck } from '../content/check.js';
import { allowed, essence, isActiveContent } from '../content/media-type.js';
import { GatewayError, isGatewayError } from '../errors.js';
import type { Interaction } from '../fhir/interaction.js';
import type { RequestContext } from '../http/context.js';
import type { PassThrough } from '../proxy/pass-through.js';
import type { EffectiveRule } from '../security/policy.js';
import { BlobUnreadable, type BlobInfo, type BlobStore } from '../storage/blob-store.js';
import { Base64Encode, base64Length } from './base64.js';
import { binaryView } from './negotiate.js';
import { spoolExternalized } from '../rewrite/spool.js';
import { etagMatches, parseRange } from './range.js';
import { blobExtension, findBlobRef, type BlobRef } from './reference.js';
import { readJson, sendUpstream, UpstreamFailure } from './upstream-exchange.js';

const FHIR_BODY = /^application\/(fhir\+json|json\+fhir|fhir\+xml|xml\+fhir)$/;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
/** A Binary resource the upstream returns is small once its content is in the store; an inline one larger than this is not read into memory. */
const MAX_RESOURCE_BYTES = 1024 * 1024;
/** X-Security-Context / securityContext: a relative reference to the resource that governs access. */
const RELATIVE_REFERENCE = /^[A-Z][A-Za-z]{1,63}\/[A-Za-z0-9\-.]{1,64}$/;
/** Raw content must never run as a page of ours: no scripts, no plugins, no same-origin. */
const RAW_SECURITY_HEADERS = { 'x-content-type-options': 'nosniff', 'content-security-policy': "default-src 'none'; sandbox" } as const;

interface BinaryResource {
  resourceType?: unknown;
  id?: unknown;
  meta?: { versionId?: unknown; lastUpdated?: unknown };
  contentType?: unknown;
  securityContext?: { reference?: unknown };
  data?: unknown;
  _data?: { extension?: unknown };
}

/**
 * The binary plane for raw Binary traffic (FHIR R4 Binary over REST): uploads go to the BlobStore
 * while being counted, hashed and type-checked, and the upstream gets a Binary that points at the
 * blob; reads are answered from the store with the Binary's headers. Transport details stay in
 * the gateway; this class sees requests only as already authorized interactions.
 */
export class BinaryPlane {
  constructor(
    private readonly store: BlobStore,
    private readonly upstream: PassThrough,
    private readonly config: () => GatewayConfig,
    private readonly log: Logger,
  ) {}

  /** Whether the plane serves this interaction rather than pass-through. */
  owns(i: Interaction): boolean {
    if (i.resourceType !== 'Binary') return false;
    if (i.interaction === 'read' || i.interaction === 'vread') return !i.conditional;
    return i.interaction === 'create' || i.interaction === 'update' || i.interaction === 'patch';
  }

  async handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, rule: EffectiveRule, i: Interaction, proceed: () => void): Promise<void> {
    // A patch could set `data` past every check (JSON Patch, FHIRPath Patch): refused, not guessed at.
    if (i.interaction === 'patch') throw new GatewayError('METHOD_NOT_ALLOWED', 'PATCH of Binary is not supported: send the whole Binary (PUT)');
    if (i.interaction === 'create' || i.interaction === 'update') return this.write(req, res, ctx, rule, i, proceed);
    proceed();
    return this.read(req, res, ctx, rule, i);
  }

  private async write(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, rule: EffectiveRule, i: Interaction, proceed: () => void): Promise<void> {
    // Raw content must reach the store through the checks; passing a conditional write on would
    // hand the upstream unchecked bytes.
    if (i.conditional) throw new GatewayError('METHOD_NOT_ALLOWED', 'conditional create/update of Binary is not supported');
    const declared = essence(req.headers['content-type']);
    if (!declared) throw new GatewayError('UNSUPPORTED_MEDIA', 'Content-Type is required for Binary content');
    if (FHIR_BODY.test(declared)) return this.writeResource(req, res, ctx, rule, i, declared, proceed);
    const allow = this.config().content.allowedTypes['Binary'] ?? [];
    if (!allowed(declared, allow)) throw new GatewayError('UNSUPPORTED_MEDIA', `${declared} is not allowed for Binary`);
    const securityContext = req.headers['x-security-context'];
    if (securityContext !== undefined && (typeof securityContext !== 'string' || !RELATIVE_REFERENCE.test(securityContext))) {
      throw new GatewayError('BAD_REQUEST', 'X-Security-Context must be a relative reference such as Patient/123');
    }
    // Only now may the client send the body (Expect: 100-continue).
    proceed();

    const info = await this.storeBody(req, res, declared, rule.limits.maxRequestBytes);
    if (!info) return;
    const ref: BlobRef = { id: info.id, sha256: info.sha256 };
    const binary = {
      resourceType: 'Binary',
      ...(i.id ? { id: i.id } : {}),
      contentType: declared,
      ...(securityContext ? { securityContext: { reference: securityContext } } : {}),
      _data: { extension: [blobExtension(ref)] },
    };
    const body = Buffer.from(JSON.stringify(binary));
    await this.commit(req, res, ctx, rule, i, [{ id: info.id, contentType: declared }], body, body.length);
  }

  /**
   * A FHIR Binary body (`application/fhir+json`): its `data` goes through the rewrite engine into
   * the store, checked like raw content, and the upstream gets the Binary with a reference instead.
   */
  private async writeResource(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, rule: EffectiveRule, i: Interaction, declared: string, proceed: () => void): Promise<void> {
    // Streaming XML is not built; a body we cannot rewrite must not reach the upstream with its data.
    if (declared.includes('xml')) throw new GatewayError('UNSUPPORTED_MEDIA', 'FHIR XML Binary bodies are not accepted: send application/fhir+json, or the content itself with its own Content-Type');
    proceed();
    const config = this.config();
    const allowedTypes = config.content.allowedTypes;
    const spooled = await spoolExternalized(req, res, config.server.spoolDir ?? tmpdir(), rule.limits.maxRequestBytes, {
      store: this.store,
      // A Binary carries no Attachments; its data is always externalized, as raw uploads are.
      minBytes: 0,
      maxBytes: rule.limits.maxRequestBytes,
      allowedTypes: (rt) => allowedTypes[rt] ?? allowedTypes['Binary'] ?? [],
    });
    if (!spooled) return;
    try {
      if (spooled.rootType !== 'Binary') {
        await this.discard(spooled.blobs.map((b) => b.info.id), ctx);
        throw new GatewayError('BAD_REQUEST', `the body of a Binary ${i.interaction} must be a Binary, not ${spooled.rootType ?? 'something without resourceType'}`);
      }
      const blobs = spooled.blobs.map((b) => ({ id: b.info.id, contentType: b.contentType }));
      await this.commit(req, res, ctx, rule, i, blobs, createReadStream(spooled.file), spooled.size);
    } finally {
      await unlink(spooled.file).catch(() => undefined);
    }
  }

  /**
   * Sends the rewritten resource to the upstream. Its answer decides the blobs' fate: accepted →
   * `linked` to the resource; refused or unreachable → deleted. The client gets the upstream's answer.
   */
  private async commit(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, rule: EffectiveRule, i: Interaction, blobs: readonly { id: string; contentType: string }[], body: Buffer | Readable, length: number): Promise<void> {
    const ids = blobs.map((b) => b.id);
    let up: IncomingMessage;
    try {
      up = await sendUpstream(this.upstream.request(req, ctx, rule.forwardAuthorization, i.method, `/${i.path}`, { 'content-type': FHIR_JSON, 'content-length': String(length), accept: FHIR_JSON }), body);
    } catch (err) {
      await this.discard(ids, ctx);
      throw err instanceof UpstreamFailure ? err.gatewayError : err;
    }
    const status = up.statusCode ?? 502;
    if (status >= 200 && status < 300) {
      const id = i.id ?? /\/Binary\/([A-Za-z0-9\-.]{1,64})(\/|$)/.exec(String(up.headers.location ?? up.headers['content-location'] ?? ''))?.[1];
      for (const blob of blobs) {
        await this.store.setMeta(blob.id, { state: 'linked', contentType: blob.contentType, ...(id ? { owner: `Binary/${id}` } : {}) }).catch((err: unknown) => {
          // The upstream has the resource, so the blob must stay; pending is what a sweeper checks
          // against the upstream before removing anything.
          this.log.warn({ reqId: ctx.id, blob: blob.id, cause: (err as Error).message }, 'blob accepted upstream but could not be marked linked');
        });
      }
    } else {
      await this.discard(ids, ctx);
    }
    this.relay(up, res, ctx);
  }

  /** Streams the body into the store through the content check; undefined when the client went away (nothing to answer). */
  private async storeBody(req: IncomingMessage, res: ServerResponse, declared: string, maxBytes: number): Promise<BlobInfo | undefined> {
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.once('close', onClose);
    const checked = pipeline(req, new ContentCheck(declared), () => undefined) as Readable;
    try {
      return await this.store.put(checked, { contentType: declared }, { maxBytes, signal: abort.signal });
    } catch (err) {
      if (abort.signal.aborted) return undefined;
      if (isGatewayError(err)) throw err;
      throw new GatewayError('STORAGE_UNAVAILABLE', undefined, { cause: err });
    } finally {
      res.off('close', onClose);
    }
  }

  private async read(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, rule: EffectiveRule, i: Interaction): Promise<void> {
    let up: IncomingMessage;
    try {
      up = await sendUpstream(this.upstream.request(req, ctx, rule.forwardAuthorization, 'GET', `/${i.path}`, { accept: FHIR_JSON }));
    } catch (err) {
      throw err instanceof UpstreamFailure ? err.gatewayError : err;
    }
    // A Binary the upstream holds inline and large is passed on as it is to a client that asked for
    // the resource; serving its content raw needs the streaming decoder (next step), never a buffer.
    const tooLarge = Number(up.headers['content-length'] ?? 0) > MAX_RESOURCE_BYTES;
    if (up.statusCode !== 200 || (tooLarge && binaryView(req.headers.accept, new URLSearchParams(i.query).get('_format') ?? undefined, '') !== 'raw')) {
      this.relay(up, res, ctx);
      return;
    }
    const binary = (await readJson(up, MAX_RESOURCE_BYTES)) as BinaryResource;
    if (binary.resourceType !== 'Binary') throw new GatewayError('UPSTREAM_UNAVAILABLE', 'the upstream answered a Binary read with something else');
    const contentType = (typeof binary.contentType === 'string' && essence(binary.contentType)) || 'application/octet-stream';
    const ref = findBlobRef(binary._data?.extension);
    const inline = typeof binary.data === 'string' ? Buffer.from(binary.data, 'base64') : undefined;
    const info = ref ? await this.blobFor(ref) : undefined;
    const size = info?.size ?? inline?.length ?? 0;

    const headers: OutgoingHttpHeaders = { 'x-request-id': ctx.id, vary: 'Accept' };
    const versionId = binary.meta?.versionId;
    if (typeof versionId === 'string') headers['etag'] = `W/"${versionId}"`;
    const lastUpdated = typeof binary.meta?.lastUpdated === 'string' ? Date.parse(binary.meta.lastUpdated) : NaN;
    if (!Number.isNaN(lastUpdated)) headers['last-modified'] = new Date(lastUpdated).toUTCString();
    const sc = binary.securityContext?.reference;
    if (typeof sc === 'string' && RELATIVE_REFERENCE.test(sc)) headers['x-security-context'] = sc;
    if (typeof headers['etag'] === 'string' && etagMatches(req.headers['if-none-match'], headers['etag'])) {
      res.writeHead(304, headers);
      res.end();
      return;
    }

    const view = binaryView(req.headers.accept, new URLSearchParams(i.query).get('_format') ?? undefined, contentType);
    if (view === 'fhir-xml') throw new GatewayError('UNSUPPORTED_MEDIA', 'FHIR XML is not served; ask for application/fhir+json');
    if (view === 'fhir-json') {
      const { data: _inlineData, _data: _ref, ...rest } = binary;
      const head = Buffer.from(`${JSON.stringify(rest).slice(0, -1)}${size > 0 || ref ? ',"data":"' : ''}`);
      const tail = Buffer.from(size > 0 || ref ? '"}' : '}');
      headers['content-type'] = FHIR_JSON;
      headers['content-length'] = head.length + (size > 0 || ref ? base64Length(size) : 0) + tail.length;
      res.writeHead(200, headers);
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      res.write(head);
      const content = ref ? (await this.store.get(ref.id)).body.pipe(new Base64Encode()) : undefined;
      if (content) await this.streamTo(content, res, false);
      else if (inline) res.write(inline.toString('base64'));
      res.end(tail);
      return;
    }

    Object.assign(headers, RAW_SECURITY_HEADERS, { 'content-type': contentType, 'accept-ranges': 'bytes' });
    if (isActiveContent(contentType)) headers['content-disposition'] = 'attachment';
    const range = parseRange(req.headers.range, size);
    if (range === 'unsatisfiable') throw new GatewayError('RANGE_NOT_SATISFIABLE', undefined, { headers: { 'content-range': `bytes */${size}` } });
    if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${size}`;
    headers['content-length'] = range ? range.end - range.start + 1 : size;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD' || size === 0) {
      res.end();
      return;
    }
    if (inline) {
      res.end(range ? inline.subarray(range.start, range.end + 1) : inline);
      return;
    }
    const { body } = await this.store.get(ref!.id, range);
    await this.streamTo(body, res, true);
  }

  /** The blob a reference names, checked against the hash the upstream holds: a swapped or altered blob is never served. */
  private async blobFor(ref: BlobRef): Promise<BlobInfo> {
    let info: BlobInfo | undefined;
    try {
      info = await this.store.head(ref.id);
    } catch (err) {
      throw new GatewayError('STORAGE_UNAVAILABLE', undefined, { cause: err });
    }
    if (!info) throw new GatewayError('BLOB_UNREADABLE', 'the content this Binary refers to is missing from the store');
    if (info.sha256 !== ref.sha256) throw new GatewayError('BLOB_UNREADABLE', 'the stored content does not match the hash the FHIR server holds');
    return info;
  }

  /** Pipes stored content to the client; a failure midway cuts the connection, so a truncated body is never taken for a whole one. */
  private streamTo(body: Readable, res: ServerResponse, end: boolean): Promise<void> {
    return new Promise((resolve) => {
      body.on('error', (err) => {
        this.log.error({ cause: err instanceof BlobUnreadable ? err.message : (err as NodeJS.ErrnoException).code ?? err.message }, 'stored content failed mid-stream');
        res.destroy();
        resolve();
      });
      body.on('end', resolve);
      res.once('close', () => {
        body.destroy();
        resolve();
      });
      body.pipe(res, { end });
    });
  }

  private relay(up: IncomingMessage, res: ServerResponse, ctx: RequestContext): void {
    res.writeHead(up.statusCode ?? 502, this.upstream.clientHeaders(up.headers, ctx.id));
    up.on('error', () => res.destroy());
    up.pipe(res);
  }

  private async discard(ids: readonly string[], ctx: RequestContext): Promise<void> {
    for (const id of ids) {
      await this.store.delete(id).catch((err: unknown) => {
        this.log.error({ reqId: ctx.id, blob: id, cause: (err as Error).message }, 'could not delete a refused blob; it stays pending for the sweeper');
      });
    }
  }
}
