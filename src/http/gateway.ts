import { createReadStream, type ReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { finished, PassThrough as PassThroughStream } from 'node:stream';
import type { Logger } from 'pino';
import { createAccessLogger } from '../logging/logger.js';
import type { GatewayConfig } from '../config/types.js';
import { forEntry, GatewayError, isGatewayError } from '../errors.js';
import { spoolAndScanBundle } from '../fhir/bundle-scan.js';
import { classifyEntry, classifyRequest } from '../fhir/classify.js';
import type { Interaction } from '../fhir/interaction.js';
import type { BinaryPlane } from '../binary/plane.js';
import type { PassThrough } from '../proxy/pass-through.js';
import { SizeLimit } from '../proxy/size-limit.js';
import { parseRanges, type Range } from '../security/ip.js';
import { TokenVerifier } from '../security/jwt.js';
import { PRE_BODY_CHECKS, runChecks, type PipelineDeps, type Principal } from '../security/pipeline.js';
import { Policy, type EffectiveRule } from '../security/policy.js';
import { buildContext, requestIdOf, type RequestContext } from './context.js';
import { requireJson, responseParams, rewritesResponse, type RewriteParams } from './response-params.js';
import { DataGuard } from '../rewrite/data-guard.js';
import { spoolThrough } from '../rewrite/spool.js';
import { sendError, toGatewayError } from './respond.js';

/** Everything derived from one configuration; swapped whole on reload so a request sees one version. */
export interface GatewayState {
  readonly config: GatewayConfig;
  readonly policy: Policy;
  readonly deps: PipelineDeps;
  readonly trustedProxies: readonly Range[];
  readonly basePath: string;
  readonly spoolDir: string;
}

export function buildState(config: GatewayConfig, basePath: string, previous?: GatewayState): GatewayState {
  // Keep the verifier (and its caches) across reloads unless what it verifies against may have
  // changed. A jwksFile is re-read on every reload: rotating a key means rewriting that file in
  // place, and a revoked key must stop working when the operator says reload.
  const sameAuth = previous && !config.auth.jwksFile && JSON.stringify(previous.config.auth) === JSON.stringify(config.auth);
  const verifier = sameAuth ? previous.deps.verifier : new TokenVerifier(config.auth);
  return {
    config,
    policy: new Policy(config),
    deps: { verifier, patientClaim: config.auth.patientClaim },
    trustedProxies: parseRanges(config.server.trustedProxies),
    basePath,
    spoolDir: config.server.spoolDir ?? tmpdir(),
  };
}

const BODYLESS = new Set(['GET', 'HEAD', 'DELETE']);
const JSON_BODY = /^application\/(fhir\+)?json\s*(;|$)/i;
const FORM_BODY = /^application\/x-www-form-urlencoded\s*(;|$)/i;
const OWN_PATHS = new Set(['/healthz', '/readyz']);

/**
 * The request flow of ARCHITECTURE.md: context → classify → security pipeline → dispatch.
 * Runs on node:http directly so pass-through traffic pays nothing for routing it does not need;
 * paths the gateway serves itself go to the fastify app (`toApp`).
 */
export class Gateway {
  private state: GatewayState;
  private readonly accessLog: Logger;

  constructor(
    state: GatewayState,
    private readonly passThrough: PassThrough,
    private readonly toApp: (req: IncomingMessage, res: ServerResponse) => void,
    private readonly log: Logger,
    /** Serves the interactions it owns (raw Binary) instead of pass-through. */
    private readonly binary?: BinaryPlane,
  ) {
    this.state = state;
    this.accessLog = createAccessLogger(log);
  }

  /** Applies a new log level to both loggers (reload). */
  setLogLevel(level: string): void {
    this.log.level = level;
    this.accessLog.level = level;
  }

  get current(): GatewayState {
    return this.state;
  }

  swap(state: GatewayState): void {
    this.state = state;
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '';
    if (OWN_PATHS.has(url)) {
      this.toApp(req, res);
      return;
    }
    const st = this.state;
    // The id comes first so that every refusal, even of a malformed request, can be traced.
    const rec: AccessRecord = { id: requestIdOf(req), ctx: undefined, interaction: undefined, code: undefined };
    // On close, not finish: an exchange cut short (client gone, upstream broke off) gets its line too.
    if (this.accessLog.isLevelEnabled('info')) res.once('close', () => this.access(rec, res));
    try {
      rec.ctx = buildContext(req, st.trustedProxies, rec.id);
      rec.interaction = classifyRequest({ method: req.method ?? '', url, basePath: st.basePath, headers: req.headers });
    } catch (err) {
      this.refuse(req, res, toGatewayError(err), rec);
      return;
    }
    try {
      this.authorizeAndDispatch(req, res, st, rec.ctx, rec.interaction)?.catch((err: unknown) =>
        this.refuse(req, res, toGatewayError(err), rec),
      );
    } catch (err) {
      this.refuse(req, res, toGatewayError(err), rec);
    }
  };

  /** Synchronous when every check could be decided at once (the common case); a promise otherwise. */
  private authorizeAndDispatch(
    req: IncomingMessage,
    res: ServerResponse,
    st: GatewayState,
    ctx: RequestContext,
    interaction: Interaction,
  ): Promise<void> | undefined {
    const chunked = req.headers['transfer-encoding'] !== undefined;
    const cl = req.headers['content-length'];
    const contentLength = cl === undefined ? undefined : Number(cl);
    // Node would forward such a body unframed (no length, no chunking) and the upstream would
    // read it as a second request: refuse bodies where FHIR has none.
    if (BODYLESS.has(req.method ?? '') && (chunked || (contentLength ?? 0) > 0)) {
      throw new GatewayError('BAD_REQUEST', `${req.method} requests must not carry a body`);
    }
    const principal: Principal = { token: undefined, scopes: undefined };
    const path = `/${interaction.path}${interaction.query ? `?${interaction.query}` : ''}`;
    if (interaction.interaction === 'batch') return this.forwardBundle(req, res, st, ctx, interaction, principal, path, contentLength);
    const rule = st.policy.ruleFor(interaction);
    const pending = runChecks({ ctx, interaction, rule, authorization: req.headers.authorization, contentLength, principal }, st.deps);
    if (pending) return pending.then(() => this.dispatch(req, res, ctx, rule, interaction, chunked, path, principal));
    return this.dispatch(req, res, ctx, rule, interaction, chunked, path, principal);
  }

  private dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    classified: Interaction,
    chunked: boolean,
    path: string,
    principal: Principal,
  ): Promise<void> | undefined {
    // `_inflate` is the gateway's parameter: read here, never passed on.
    const { params, interaction } = responseParams(classified, rule);
    ctx.rewrite = params;
    if (interaction !== classified) path = `/${interaction.path}${interaction.query ? `?${interaction.query}` : ''}`;
    if (this.binary?.owns(interaction, req.headers.accept)) {
      const patient = principal.token?.claims[this.state.deps.patientClaim];
      // Scopes count only where the rule asks for them; elsewhere the plane has no scope model to apply.
      const scopes = rule.require.smart ? principal.scopes : undefined;
      const caller = { scopes, patient: typeof patient === 'string' ? patient : undefined };
      return this.binary.handle(req, res, ctx, rule, interaction, caller, () => this.continueIfExpected(req, res));
    }
    // Answers that may carry resources go through the rewrite engine (when there is a store to inflate from).
    const rewrite = this.binary && rewritesResponse(interaction) ? params : undefined;
    if (rewrite) requireJson(req, interaction);
    const hasBody = chunked || Number(req.headers['content-length'] ?? 0) > 0;
    if (
      this.binary &&
      hasBody &&
      interaction.interaction === 'operation' &&
      (interaction.operation === 'graphql' || !FORM_BODY.test(req.headers['content-type'] ?? ''))
    ) {
      return this.forwardOperationBody(req, res, ctx, rule, interaction, path, rewrite);
    }
    this.continueIfExpected(req, res);
    // A declared length is enforced by Node's parser; only chunked bodies need counting.
    const body = chunked ? req.pipe(new SizeLimit(rule.limits.maxRequestBytes)) : undefined;
    this.passThrough.forward(req, res, ctx, {
      path,
      forwardAuthorization: rule.forwardAuthorization,
      ...(body ? { body } : {}),
      ...(rewrite ? { rewrite } : {}),
    });
    return undefined;
  }

  /**
   * Batch and transaction Bundles are authorized entry by entry. The body is spooled (never held
   * in memory) while its entries are read; only after every entry passed does the upstream get it.
   */
  private async forwardBundle(
    req: IncomingMessage,
    res: ServerResponse,
    st: GatewayState,
    ctx: RequestContext,
    interaction: Interaction,
    principal: Principal,
    path: string,
    contentLength: number | undefined,
  ): Promise<void> {
    if (!JSON_BODY.test(req.headers['content-type'] ?? '')) {
      throw new GatewayError('UNSUPPORTED_MEDIA', 'batch and transaction Bundles must be sent as application/fhir+json');
    }
    // Whether this is a batch or a transaction is in the body; before reading it, the request must
    // pass the transport/address/size/token checks of one of the two rules (the body decides which,
    // and is checked again against that one).
    const requestRule = await this.passEither(st, ctx, interaction, principal, req.headers.authorization, contentLength);
    this.continueIfExpected(req, res);
    const scanned = await spoolAndScanBundle(req, {
      dir: st.spoolDir,
      maxBytes: requestRule.limits.maxRequestBytes,
      maxEntries: st.config.bundles.maxEntries,
    });
    // The spool file holds the whole body (PHI): it goes when the exchange ends, however it
    // ends. finished() also fires for a response that closed while we were still checking.
    let body: ReadStream | undefined;
    finished(res, () => {
      body?.destroy();
      void unlink(scanned.file).catch(() => undefined);
    });
    const authorization = req.headers.authorization;
    const bundle: Interaction = { ...interaction, interaction: scanned.type };
    const bundleRule = st.policy.ruleFor(bundle);
    await runChecks({ ctx, interaction: bundle, rule: bundleRule, authorization, contentLength: scanned.size, principal }, st.deps);
    for (const entry of scanned.entries) {
      try {
        const ei = classifyEntry(entry.method, entry.url, entry.ifNoneExist !== undefined ? { ifNoneExist: entry.ifNoneExist } : undefined);
        // Binary content and its securityContext are the binary plane's, which a Bundle entry
        // bypasses: reading or writing Binary is done at its own endpoints.
        if (ei.resourceType === 'Binary' || entry.resourceType === 'Binary')
          throw new GatewayError('BAD_BUNDLE', 'Binary cannot be read or written inside a Bundle: use the Binary endpoints');
        if (ei.operation === 'binary-access-read' || ei.operation === 'binary-access-write')
          throw new GatewayError('BAD_BUNDLE', `$${ei.operation} cannot be used inside a Bundle`);
        if (
          entry.resourceType !== undefined &&
          (ei.interaction === 'create' || ei.interaction === 'update') &&
          entry.resourceType !== ei.resourceType
        ) {
          throw new GatewayError('BAD_BUNDLE', `resource is ${entry.resourceType.slice(0, 64)} but request.url names ${ei.resourceType}`);
        }
        await runChecks({ ctx, interaction: ei, rule: st.policy.ruleFor(ei), authorization, contentLength: undefined, principal }, st.deps);
      } catch (err) {
        throw isGatewayError(err) ? forEntry(err, entry.index) : err;
      }
    }
    // A client that went away while we checked gets nothing executed on its behalf.
    if (res.destroyed || req.socket.destroyed) return;
    if (this.binary) {
      const { params, interaction: stripped } = responseParams(bundle, bundleRule);
      ctx.rewrite = params;
      const upstreamPath = stripped === bundle ? path : `/${stripped.path}${stripped.query ? `?${stripped.query}` : ''}`;
      return this.binary.forwardBundle(req, res, ctx, bundleRule, upstreamPath, scanned.file, scanned.type);
    }
    body = createReadStream(scanned.file);
    this.passThrough.forward(req, res, ctx, {
      path,
      forwardAuthorization: bundleRule.forwardAuthorization,
      body,
      contentLength: scanned.size,
    });
  }

  /**
   * An operation may store what it is sent ($process-message, $submit-attachment, …), so its body
   * is held to the same rule as a write: no attachment data at or above externalize.minBytes, no
   * blob reference of ours. It is spooled while checked (never held in memory), then sent on
   * unchanged with its length. Only JSON can be checked: other bodies are refused (form-encoded
   * parameters, which carry no attachments, pass as they are).
   */
  private async forwardOperationBody(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    path: string,
    rewrite: RewriteParams | undefined,
  ): Promise<void> {
    const json = JSON_BODY.test(req.headers['content-type'] ?? '');
    // A GraphQL mutation carries resources inside a query string, where the guard cannot see
    // attachments: its body, in whatever format, is bounded like a PATCH instead.
    const graphql = i.operation === 'graphql';
    if (!json && !graphql) {
      throw new GatewayError(
        'UNSUPPORTED_MEDIA',
        'an operation body must be application/fhir+json: other formats are not checked for attachment data',
      );
    }
    const st = this.state;
    const minBytes = st.config.externalize.minBytes;
    const declared = req.headers['content-length'];
    if (graphql && declared !== undefined && Number(declared) > minBytes) throw graphqlTooLarge(minBytes);
    this.continueIfExpected(req, res);
    const max = graphql ? Math.min(minBytes, rule.limits.maxRequestBytes) : rule.limits.maxRequestBytes;
    const spooled = await spoolThrough(
      req,
      res,
      st.spoolDir,
      max,
      json ? new DataGuard(minBytes) : new PassThroughStream(),
      'operation',
    ).catch((err: unknown) => {
      throw graphql && isGatewayError(err) && err.code === 'PAYLOAD_TOO_LARGE' ? graphqlTooLarge(minBytes) : err;
    });
    if (!spooled) return;
    const body = createReadStream(spooled.file);
    finished(res, () => {
      body.destroy();
      void unlink(spooled.file).catch(() => undefined);
    });
    this.passThrough.forward(req, res, ctx, {
      path,
      forwardAuthorization: rule.forwardAuthorization,
      body,
      contentLength: spooled.size,
      ...(rewrite ? { rewrite } : {}),
    });
  }

  private async passEither(
    st: GatewayState,
    ctx: RequestContext,
    interaction: Interaction,
    principal: Principal,
    authorization: string | undefined,
    contentLength: number | undefined,
  ): Promise<EffectiveRule> {
    let first: unknown;
    for (const kind of ['batch', 'transaction'] as const) {
      const rule = st.policy.ruleFor({ ...interaction, interaction: kind });
      try {
        await runChecks(
          { ctx, interaction: { ...interaction, interaction: kind }, rule, authorization, contentLength, principal },
          st.deps,
          PRE_BODY_CHECKS,
        );
        return rule;
      } catch (err) {
        first ??= err;
      }
    }
    throw first;
  }

  private continueIfExpected(req: IncomingMessage, res: ServerResponse): void {
    // Only reached after the checks passed: a refused upload is answered before its body is sent.
    if (req.headers.expect?.toLowerCase() === '100-continue') res.writeContinue();
  }

  private refuse(req: IncomingMessage, res: ServerResponse, err: GatewayError, rec: AccessRecord): void {
    rec.code = err.code;
    if (err.code === 'INTERNAL') this.log.error({ reqId: rec.id, err: err.cause }, 'internal error');
    sendError(req, res, err, rec.id);
  }

  /** One line per request: never headers, query strings (search parameters are PHI) or bodies. */
  private access(rec: AccessRecord, res: ServerResponse): void {
    if (!this.accessLog.isLevelEnabled('info')) return;
    const { ctx, interaction: i } = rec;
    this.accessLog.info(
      {
        reqId: rec.id,
        client: ctx?.clientIp.toString(),
        method: i?.method,
        interaction: i?.interaction,
        resourceType: i?.resourceType,
        operation: i?.operation,
        status: res.statusCode,
        ...(rec.code ? { code: rec.code } : {}),
        ...(res.writableFinished ? {} : { aborted: true }),
        ms: ctx ? Math.round((performance.now() - ctx.startedAt) * 10) / 10 : undefined,
      },
      'request',
    );
  }
}

interface AccessRecord {
  readonly id: string;
  ctx: RequestContext | undefined;
  interaction: Interaction | undefined;
  /** The catalogue code when the gateway refused the request. */
  code: string | undefined;
}

function graphqlTooLarge(minBytes: number): GatewayError {
  return new GatewayError(
    'PAYLOAD_TOO_LARGE',
    `a $graphql body may not exceed externalize.minBytes (${minBytes} bytes): a mutation could carry attachment data past the rewrite`,
  );
}
