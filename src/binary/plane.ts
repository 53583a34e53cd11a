import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { pipeline } from 'node:stream';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/types.js';
import { allowed, essence } from '../content/media-type.js';
import { GatewayError } from '../errors.js';
import type { Interaction } from '../fhir/interaction.js';
import type { RequestContext } from '../http/context.js';
import type { PassThrough } from '../proxy/pass-through.js';
import { spoolExternalized } from '../rewrite/spool.js';
import type { EffectiveRule } from '../security/policy.js';
import type { BlobStore } from '../storage/blob-store.js';
import { BinaryAccess } from './access.js';
import { BundleWrites } from './bundle-writes.js';
import type { ResponseRewrite } from './response-rewrite.js';
import { requireJson } from '../http/response-params.js';
import { ResourceWrites } from './resource-writes.js';
import { Base64Encode, base64Length } from './base64.js';
import { ContentIo, FHIR_JSON, RELATIVE_REFERENCE, type FetchedAttachment, type FhirResource } from './content-io.js';
import { binaryView } from './negotiate.js';
import { etagMatches } from './range.js';
import { blobExtension, findBlobRef } from './reference.js';
import { securityContextOf, SecurityContextGuard, type Caller } from './security-context.js';

const FHIR_BODY = /^application\/(fhir\+json|json\+fhir|fhir\+xml|xml\+fhir)$/;
const BINARY_LOCATION = /\/Binary\/([A-Za-z0-9\-.]{1,64})(\/|$)/;

interface BinaryResource extends FhirResource {
  contentType?: unknown;
  securityContext?: { reference?: unknown };
  data?: unknown;
  _data?: { extension?: unknown };
}

/**
 * The binary plane: raw Binary traffic (FHIR R4 Binary over REST) and FHIR JSON Binary bodies,
 * plus the binary-access operations and raw Media (BinaryAccess). Uploads go to the BlobStore
 * while being counted, hashed and type-checked, and the upstream gets a Binary that points at the
 * blob; reads are answered from the store with the Binary's headers. This class sees requests
 * only as already authorized interactions.
 */
export class BinaryPlane {
  private readonly io: ContentIo;
  private readonly access: BinaryAccess;
  private readonly guard: SecurityContextGuard;
  private readonly resources: ResourceWrites;
  private readonly bundles: BundleWrites;
  /** The read direction of the rewrite engine, for every answer that may carry attachments. */
  readonly responses: ResponseRewrite;

  constructor(
    store: BlobStore,
    upstream: PassThrough,
    private readonly config: () => GatewayConfig,
    log: Logger,
  ) {
    this.io = new ContentIo(store, upstream, () => config().server.spoolDir ?? tmpdir(), log);
    this.responses = this.io.responses;
    this.guard = new SecurityContextGuard(this.io);
    this.access = new BinaryAccess(this.io, this.guard, config);
    this.resources = new ResourceWrites(this.io, config);
    this.bundles = new BundleWrites(this.io, config);
  }

  /** A batch/transaction already authorized entry by entry, spooled in `file`. */
  forwardBundle(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    path: string,
    file: string,
    type: 'batch' | 'transaction',
  ): Promise<void> {
    return this.bundles.forward(req, res, ctx, rule, path, file, type);
  }

  /** Whether the plane serves this interaction rather than pass-through. */
  owns(i: Interaction, accept: string | undefined): boolean {
    if (BinaryAccess.owns(i, accept) || ResourceWrites.owns(i)) return true;
    if (i.resourceType !== 'Binary') return false;
    if (i.interaction === 'read' || i.interaction === 'vread') return !i.conditional;
    if (i.interaction === 'history' || i.interaction === 'search' || i.interaction === 'delete') return true;
    return i.interaction === 'create' || i.interaction === 'update' || i.interaction === 'patch';
  }

  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    caller: Caller,
    proceed: () => void,
  ): Promise<void> {
    if (ResourceWrites.owns(i)) return this.resources.handle(req, res, ctx, rule, i, proceed);
    if (i.resourceType !== 'Binary' || i.interaction === 'operation') return this.access.handle(req, res, ctx, rule, i, caller, proceed);
    // A patch could set `data` past every check (JSON Patch, FHIRPath Patch): refused, not guessed at.
    if (i.interaction === 'patch')
      throw new GatewayError('METHOD_NOT_ALLOWED', 'PATCH of Binary is not supported: send the whole Binary (PUT)');
    if (i.interaction === 'create' || i.interaction === 'update') return this.write(req, res, ctx, rule, i, caller, proceed);
    if (i.interaction === 'history' || i.interaction === 'search') {
      // Versions and search results carry content and references of Binaries with any
      // securityContext; only a caller who may read every resource type may list them.
      if (!SecurityContextGuard.readsEverything(caller))
        throw new GatewayError(
          'INSUFFICIENT_SCOPE',
          `Binary ${i.interaction} needs read access to every resource type (user/*.r or system/*.r): each Binary's securityContext governs it`,
        );
      requireJson(req, i);
      proceed();
      this.io.upstream.forward(req, res, ctx, {
        path: `/${i.path}${i.query ? `?${i.query}` : ''}`,
        forwardAuthorization: rule.forwardAuthorization,
        rewrite: ctx.rewrite,
      });
      return;
    }
    if (i.interaction === 'delete') {
      // Deleting is replacing with nothing: the same right as replacing.
      await this.guardUpdate(req, ctx, rule, i, caller);
      proceed();
      this.io.upstream.forward(req, res, ctx, {
        path: `/${i.path}${i.query ? `?${i.query}` : ''}`,
        forwardAuthorization: rule.forwardAuthorization,
      });
      return;
    }
    proceed();
    return this.read(req, res, ctx, rule, i, caller);
  }

  private async write(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    caller: Caller,
    proceed: () => void,
  ): Promise<void> {
    // Content must reach the store through the checks; passing a conditional write on would
    // hand the upstream unchecked bytes.
    if (i.conditional) throw new GatewayError('METHOD_NOT_ALLOWED', 'conditional create/update of Binary is not supported');
    const declared = essence(req.headers['content-type']);
    if (!declared) throw new GatewayError('UNSUPPORTED_MEDIA', 'Content-Type is required for Binary content');
    if (FHIR_BODY.test(declared)) return this.writeResource(req, res, ctx, rule, i, declared, caller, proceed);
    const allow = this.config().content.allowedTypes['Binary'] ?? [];
    if (!allowed(declared, allow)) throw new GatewayError('UNSUPPORTED_MEDIA', `${declared} is not allowed for Binary`);
    const securityContext = req.headers['x-security-context'];
    if (securityContext !== undefined && (typeof securityContext !== 'string' || !RELATIVE_REFERENCE.test(securityContext))) {
      throw new GatewayError('BAD_REQUEST', 'X-Security-Context must be a relative reference such as Patient/123');
    }
    const version = await this.guardUpdate(req, ctx, rule, i, caller);
    if (securityContext) await this.guard.require(req, ctx, rule, caller, securityContext);
    echoNoContent(ctx);
    // Only now may the client send the body (Expect: 100-continue).
    proceed();

    const info = await this.io.storeBody(req, res, declared, rule.limits.maxRequestBytes);
    if (!info) return;
    const binary = {
      resourceType: 'Binary',
      ...(i.id ? { id: i.id } : {}),
      contentType: declared,
      ...(securityContext ? { securityContext: { reference: securityContext } } : {}),
      _data: { extension: [blobExtension({ id: info.id, sha256: info.sha256 })] },
    };
    const body = Buffer.from(JSON.stringify(binary));
    const up = await this.io.commit(
      req,
      ctx,
      rule,
      i.method,
      `/${i.path}`,
      this.ifMatch(req, version),
      [{ id: info.id, contentType: declared }],
      body,
      body.length,
      (r) => this.owner(i, r),
    );
    this.io.relay(req, up, res, ctx);
  }

  /**
   * A FHIR Binary body (`application/fhir+json`): its `data` goes through the rewrite engine into
   * the store, checked like raw content, and the upstream gets the Binary with a reference instead.
   */
  private async writeResource(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    declared: string,
    caller: Caller,
    proceed: () => void,
  ): Promise<void> {
    // Streaming XML is not built; a body we cannot rewrite must not reach the upstream with its data.
    if (declared.includes('xml'))
      throw new GatewayError(
        'UNSUPPORTED_MEDIA',
        'FHIR XML Binary bodies are not accepted: send application/fhir+json, or the content itself with its own Content-Type',
      );
    const version = await this.guardUpdate(req, ctx, rule, i, caller);
    echoNoContent(ctx);
    proceed();
    const config = this.config();
    const allowedTypes = config.content.allowedTypes;
    const spooled = await spoolExternalized(req, res, config.server.spoolDir ?? tmpdir(), rule.limits.maxRequestBytes, {
      store: this.io.store,
      // Binary.data is always externalized, as raw uploads are; anything nested (extensions) only
      // above the threshold, so one body cannot fan out into many blobs.
      minBytes: config.externalize.minBytes,
      binaryMinBytes: 0,
      maxBytes: rule.limits.maxRequestBytes,
      allowedTypes: (rt) => allowedTypes[rt] ?? allowedTypes['Binary'] ?? [],
    });
    if (!spooled) return;
    try {
      if (spooled.rootType !== 'Binary') {
        await this.io.discard(
          spooled.blobs.map((b) => b.info.id),
          ctx,
        );
        throw new GatewayError(
          'BAD_REQUEST',
          `the body of a Binary ${i.interaction} must be a Binary, not ${spooled.rootType ?? 'something without resourceType'}`,
        );
      }
      const blobs = spooled.blobs.map((b) => ({ id: b.info.id, contentType: b.contentType }));
      try {
        const sc = securityContextOf({ securityContext: spooled.rootSecurityContext }, 'write');
        if (sc !== undefined) await this.guard.require(req, ctx, rule, caller, sc);
      } catch (err) {
        await this.io.discard(
          blobs.map((b) => b.id),
          ctx,
        );
        throw err;
      }
      const up = await this.io.commit(
        req,
        ctx,
        rule,
        i.method,
        `/${i.path}`,
        this.ifMatch(req, version),
        blobs,
        createReadStream(spooled.file),
        spooled.size,
        (r) => this.owner(i, r),
      );
      this.io.relay(req, up, res, ctx);
    } finally {
      await unlink(spooled.file).catch(() => undefined);
    }
  }

  /**
   * Replacing or deleting a Binary needs the same right as reading it: the securityContext of the
   * version being replaced is checked too, or a caller could take over content governed by another
   * patient. A deleted Binary is judged by its earlier versions (delete, then re-create under the
   * same id, must not launder it). Resolves with the current version, for If-Match.
   */
  private async guardUpdate(
    req: IncomingMessage,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    caller: Caller,
  ): Promise<string | undefined> {
    if (i.interaction !== 'update' && i.interaction !== 'delete') return undefined;
    if (i.id === undefined) throw new GatewayError('METHOD_NOT_ALLOWED', `conditional ${i.interaction} of Binary is not supported`);
    if (!caller.scopes) return undefined;
    const got = await this.io.fetchResource(req, ctx, rule, `/Binary/${i.id}`);
    if (!('relay' in got)) {
      const sc = securityContextOf(got.resource, 'write');
      if (sc !== undefined) await this.guard.require(req, ctx, rule, caller, sc);
      const v = got.resource.meta?.versionId;
      return typeof v === 'string' ? v : undefined;
    }
    const status = got.relay.statusCode;
    got.relay.resume();
    if (status === 404) return undefined;
    // Gone (or anything else): every earlier version's context must be readable by the caller.
    const history = await this.io.fetchResource(req, ctx, rule, `/Binary/${i.id}/_history`);
    if ('relay' in history) {
      history.relay.resume();
      throw new GatewayError('INSUFFICIENT_SCOPE', 'the earlier versions of this Binary could not be checked');
    }
    const entries = (history.resource['entry'] ?? []) as { resource?: FhirResource }[];
    for (const e of Array.isArray(entries) ? entries : []) {
      const sc = e.resource ? securityContextOf(e.resource, 'write') : undefined;
      if (sc !== undefined) await this.guard.require(req, ctx, rule, caller, sc);
    }
    return undefined;
  }

  /**
   * The version the securityContext check read: the update must replace exactly that one, or a
   * version written in between (with another context) would be overwritten unchecked. A client's
   * own If-Match is kept (the upstream then enforces it).
   */
  private ifMatch(req: IncomingMessage, version: string | undefined): Record<string, string> {
    return version !== undefined && req.headers['if-match'] === undefined ? { 'if-match': `W/"${version}"` } : {};
  }

  private owner(i: Interaction, up: IncomingMessage): string | undefined {
    const id = i.id ?? BINARY_LOCATION.exec(String(up.headers.location ?? up.headers['content-location'] ?? ''))?.[1];
    return id ? `Binary/${id}` : undefined;
  }

  private async read(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    caller: Caller,
  ): Promise<void> {
    const got = await this.io.fetchAttachment(req, ctx, rule, `/${i.path}`, 'binary', this.config().server.spoolDir ?? tmpdir());
    if ('relay' in got) {
      this.io.relay(req, got.relay, res, ctx);
      return;
    }
    try {
      await this.serve(req, res, ctx, rule, i, caller, got);
    } finally {
      await got.release();
    }
  }

  private async serve(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    caller: Caller,
    got: FetchedAttachment,
  ): Promise<void> {
    const binary = got.resource as BinaryResource;
    if (binary.resourceType !== 'Binary')
      throw new GatewayError('UPSTREAM_UNAVAILABLE', 'the upstream answered a Binary read with something else');
    await this.guard.binaryRead(req, ctx, rule, i, caller, binary);
    const format = new URLSearchParams(i.query).get('_format') ?? undefined;
    const contentType = (typeof binary.contentType === 'string' && essence(binary.contentType)) || 'application/octet-stream';
    const ref = findBlobRef(binary._data?.extension);
    const inline = ref ? undefined : got.inline;
    const info = ref ? await this.io.blobFor(ref, `Binary/${String(binary.id)}`) : undefined;
    const size = info?.size ?? (inline ? ('bytes' in inline ? inline.bytes.length : inline.size) : 0);

    const headers: OutgoingHttpHeaders = { ...this.io.versionHeaders(binary, ctx), vary: 'Accept' };
    const sc = binary.securityContext?.reference;
    if (typeof sc === 'string' && RELATIVE_REFERENCE.test(sc)) headers['x-security-context'] = sc;
    if (typeof headers['etag'] === 'string' && etagMatches(req.headers['if-none-match'], headers['etag'])) {
      res.writeHead(304, headers);
      res.end();
      return;
    }

    const view = binaryView(req.headers.accept, format, contentType);
    if (view === 'fhir-xml') throw new GatewayError('UNSUPPORTED_MEDIA', 'FHIR XML is not served; ask for application/fhir+json');
    if (view === 'raw') {
      const content = ref
        ? { ref }
        : inline
          ? 'bytes' in inline
            ? { inline: inline.bytes }
            : { file: inline.file }
          : { inline: Buffer.alloc(0) };
      await this.io.serveRaw(req, res, headers, { contentType, size, ...content });
      return;
    }
    const { data: _inlineData, _data: _ref, ...rest } = binary;
    const hasData = size > 0 || ref !== undefined;
    const head = Buffer.from(`${JSON.stringify(rest).slice(0, -1)}${hasData ? ',"data":"' : ''}`);
    const tail = Buffer.from(hasData ? '"}' : '}');
    headers['content-type'] = FHIR_JSON;
    headers['content-length'] = head.length + (hasData ? base64Length(size) : 0) + tail.length;
    const bytes =
      req.method === 'HEAD' || !hasData
        ? undefined
        : ref
          ? await this.io.open(ref.id)
          : inline && 'file' in inline
            ? createReadStream(inline.file)
            : undefined;
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.write(head);
    // pipeline, not pipe: a failure midway must reach streamTo, which cuts the connection.
    if (bytes)
      await this.io.streamTo(
        pipeline(bytes, new Base64Encode(), () => undefined),
        res,
        false,
        ctx.id,
      );
    else if (inline && 'bytes' in inline) res.write(inline.bytes.toString('base64'));
    res.end(tail);
  }
}

/** The answer to a Binary write does not echo the bytes the client just sent: a link stands for them. */
function echoNoContent(ctx: RequestContext): void {
  if (ctx.rewrite) ctx.rewrite = { ...ctx.rewrite, inflate: false };
}
