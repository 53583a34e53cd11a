import { unlink } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { finished } from 'node:stream';
import type { Logger } from 'pino';
import type { BundleWrites } from '../binary/bundle-writes.js';
import { contentReadOf, contentRulesOf, contentWriteRulesOf, type FileUrls } from '../binary/file-urls.js';
import { FILE_SEGMENT } from '../fhir/content-link.js';
import type { BlobRef } from '../fhir/blob-reference.js';
import { GatewayError } from '../errors/catalogue.js';
import { toGatewayError } from '../errors/map.js';
import { spoolAndScanBundle } from '../fhir/bundle-scan.js';
import { classifyRequest } from '../fhir/classify.js';
import { scanHeaders } from '../fhir/target-scan.js';
import { OWN_ONLY } from '../fhir/reach.js';
import type { Interaction } from '../fhir/interaction.js';
import { sendError } from '../lib/respond.js';
import { READS_ALL, rewriteParams, type RewriteParams } from '../rewrite/params.js';
import { authorizeBundle, authorizeBundleRequest, type BundleRequest } from '../security/bundle.js';
import {
  newPrincipal,
  requireAddress,
  requireDeclaredSize,
  requireTransport,
  type CheckInput,
  type Principal,
} from '../security/checks.js';
import { answerGuard } from '../security/answer-guard.js';
import { bundleReadGrant, readGrant } from '../security/read-grant.js';
import { Exchange } from '../security/exchange.js';
import { GATEWAY_CHECKS, runChecks } from '../security/pipeline.js';
import type { LiveSettings, Settings } from '../security/settings.js';
import type { AccessLog, AccessRecord } from './access-log.js';
import { refuseEncodedBody } from './body-encoding.js';
import { buildContext, requestIdOf } from './context.js';
import type { ExchangeAudit } from './exchange-audit.js';
import type { Tracing } from '../telemetry/tracing.js';
import type { GraphqlApi } from '../graphql/api.js';
import { sendExplorer } from '../graphql/explorer.js';
import { routeFor, type Route } from './routes.js';

const BODYLESS = new Set(['GET', 'HEAD', 'DELETE']);
const JSON_BODY = /^application\/(fhir\+)?json\s*(;|$)/i;
const OWN_PATHS = new Set(['/healthz', '/readyz']);
/** A signed URL's answer is content served raw: nothing of it is rewritten. */
const NO_REWRITE: RewriteParams = { inflate: false, maxBytes: 0, owners: 'root', reader: READS_ALL, withhold: false };

export interface FlowDeps {
  readonly settings: LiveSettings;
  /** The public FHIR base path: '' or e.g. '/fhir'. */
  readonly basePath: string;
  readonly routes: readonly Route[];
  readonly bundles: BundleWrites;
  /** The fastify app, for the paths the gateway answers itself (health.ts). */
  readonly health: (req: IncomingMessage, res: ServerResponse) => void;
  readonly accessLog: AccessLog;
  readonly audit: ExchangeAudit;
  /** A server span per request (when tracing is on), active while the gateway works on it. */
  readonly tracing?: Tracing;
  /** The admin API is served on this listener (under /_admin/, by the fastify app). */
  readonly adminOnMain?: boolean;
  readonly log: Logger;
  /** Patient-scoped reads by id the pipeline let through: the upstream says whether they are the patient's. */
  readonly patientReads: { requirePatientRead(x: Exchange): Promise<void> };
  /** Signed file URLs, followed without a token (`{base}/_file/…`). */
  readonly files: FileUrls;
  /** The files GraphQL API at its path (graphql.path, outside the FHIR base), when configured at start. */
  readonly graphql?: { readonly path: string; readonly api: GraphqlApi };
}

/**
 * The request flow of ARCHITECTURE.md: context → classify → security pipeline → route. Runs on
 * node:http directly, so pass-through traffic pays nothing for routing it does not need.
 * Synchronous while every check can be decided at once (the common case).
 */
export class RequestFlow {
  /** `{base}/_file/`: made once, looked for on every request. */
  private readonly fileRoot: string;

  constructor(private readonly d: FlowDeps) {
    this.fileRoot = `${d.basePath}/${FILE_SEGMENT}/`;
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '';
    if (OWN_PATHS.has(url) || (this.d.adminOnMain === true && url.startsWith('/_admin/'))) {
      this.d.health(req, res);
      return;
    }
    const settings = this.d.settings.current;
    // The id comes first so that every refusal, even of a malformed request, can be traced.
    const span = this.d.tracing?.serverSpan(req.method ?? '', req.headers);
    const rec = this.d.accessLog.start(requestIdOf(req, settings.trustedProxies), res, span);
    this.d.audit.watch(rec, res);
    if (span) this.d.tracing!.within(span, () => this.begin(req, res, url, settings, rec));
    else this.begin(req, res, url, settings, rec);
  };

  private begin(req: IncomingMessage, res: ServerResponse, url: string, settings: Settings, rec: AccessRecord): void {
    try {
      rec.ctx = buildContext(req, settings.trustedProxies, rec.id);
      if (url.startsWith(this.fileRoot)) {
        this.signedFile(req, res, url, settings, rec).catch((err: unknown) => this.refuse(req, res, toGatewayError(err), rec));
        return;
      }
      const graphql = this.d.graphql;
      if (graphql && (url === graphql.path || url.startsWith(`${graphql.path}?`))) {
        this.graphql(req, res, settings, rec, graphql.api).catch((err: unknown) => this.refuse(req, res, toGatewayError(err), rec));
        return;
      }
      rec.interaction = classifyRequest({ method: req.method ?? '', url, basePath: this.d.basePath, headers: req.headers });
      rec.principal = newPrincipal();
      this.authorize(req, res, settings, rec.ctx, rec.interaction, rec.principal, rec)?.catch((err: unknown) =>
        this.refuse(req, res, toGatewayError(err), rec),
      );
    } catch (err) {
      this.refuse(req, res, toGatewayError(err), rec);
    }
  }

  /**
   * A signed file URL: no token; the URL's signature, times, address and protocol instead, and the
   * address and transport rules for reading that content. Its query (the signature) is never
   * logged: the access line has no query, and the interaction recorded carries none.
   */
  private async signedFile(req: IncomingMessage, res: ServerResponse, url: string, settings: Settings, rec: AccessRecord): Promise<void> {
    const ctx = rec.ctx!;
    rec.principal = newPrincipal();
    const q = url.indexOf('?');
    const path = (q < 0 ? url : url.slice(0, q)).slice(this.d.basePath.length + 1);
    const method = req.method ?? '';
    const [, type, id] = path.split('/');
    // Named for the log and the audit trail by what the path says, before anything is verified.
    rec.interaction = {
      kind: 'operation',
      operation: 'file',
      method,
      path: FILE_SEGMENT,
      query: '',
      ...(type && id ? { resourceType: type.slice(0, 64), id: id.slice(0, 64) } : {}),
    };
    if (!settings.signer) throw new GatewayError('NOT_FOUND', 'signed file URLs are not enabled (signedUrls.enabled)');
    const upload = method === 'POST';
    if (method !== 'GET' && method !== 'HEAD' && !upload)
      throw new GatewayError('METHOD_NOT_ALLOWED', 'a signed URL takes GET or HEAD (read), or POST (write)', {
        headers: { allow: 'GET, HEAD, POST' },
      });
    if (!upload && (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0))
      throw new GatewayError('BAD_REQUEST', `${method} requests must not carry a body`);
    const verified = settings.signer.verify(path, q < 0 ? '' : url.slice(q + 1), {
      method,
      clientIp: ctx.clientIp,
      secure: ctx.secure,
      // A refused use of a genuine URL (expired, revoked, another address) is recorded under its name too.
      signed: (urlId, f) => {
        rec.signedUrl = { keyId: f.skid, ...(f.si ? { policy: f.si } : {}), url: urlId };
      },
    });
    if (upload) {
      // The network conditions and size limits of every rule for writing the content hold for a URL as for a token.
      const cl = req.headers['content-length'];
      const contentLength = cl === undefined ? undefined : Number(cl);
      for (const r of contentWriteRulesOf(settings, verified.type, verified.id)) {
        requireTransport({ ctx, rule: r });
        requireAddress({ ctx, rule: r });
        void requireDeclaredSize(
          { ctx, interaction: rec.interaction, rule: r, authorization: undefined, contentLength, principal: rec.principal },
          settings,
        );
      }
      refuseEncodedBody(req.headers['content-encoding'], true);
      const rule = settings.policy.ruleFor(contentReadOf(verified.type, verified.id));
      await this.d.files.followWrite(new Exchange(req, res, ctx, rec.interaction, rule, rec.principal, NO_REWRITE, settings), verified);
      return;
    }
    const rule = settings.policy.ruleFor(contentReadOf(verified.type, verified.id));
    // The network conditions of every rule for reading the content hold for a URL as for a token: a URL never widens them.
    for (const r of contentRulesOf(settings, verified.type, verified.id)) {
      requireTransport({ ctx, rule: r });
      requireAddress({ ctx, rule: r });
    }
    await this.d.files.follow(new Exchange(req, res, ctx, rec.interaction, rule, rec.principal, NO_REWRITE, settings), verified);
  }

  /**
   * The files GraphQL API: the request through the pipeline as `operation: gateway-graphql` (its
   * rules' transport, addresses, size, token and named scopes); each field is then authorized as
   * what it does (graphql/files.ts).
   */
  private async graphql(req: IncomingMessage, res: ServerResponse, settings: Settings, rec: AccessRecord, api: GraphqlApi): Promise<void> {
    const interaction: Interaction = {
      kind: 'operation',
      operation: 'gateway-graphql',
      method: req.method ?? '',
      path: 'graphql',
      query: '',
    };
    rec.interaction = interaction;
    const principal = (rec.principal = newPrincipal());
    if (!settings.config.graphql.enabled) throw new GatewayError('NOT_FOUND', 'the GraphQL API is off (graphql.enabled)');
    // A browser asking for the page: the static GraphiQL explorer, no token needed (it holds no data).
    if (req.method === 'GET' && settings.config.graphql.explorer && (req.headers.accept ?? '').includes('text/html')) {
      // Where users paste tokens: only over a transport the API itself would take.
      requireTransport({ ctx: rec.ctx!, rule: settings.policy.ruleFor(interaction) });
      sendExplorer(res, this.d.graphql!.path, rec.id);
      return;
    }
    const chunked = req.headers['transfer-encoding'] !== undefined;
    const cl = req.headers['content-length'];
    const contentLength = cl === undefined ? undefined : Number(cl);
    refuseEncodedBody(req.headers['content-encoding'], chunked || (contentLength ?? 0) > 0);
    // What the classifier refuses in any request (method overrides), and a conditional create's
    // header, which would reach the upstream with the transaction the API sends.
    if (scanHeaders(req.headers) !== undefined) throw new GatewayError('BAD_REQUEST', 'If-None-Exist is not taken by the GraphQL API');
    const rule = settings.policy.ruleFor(interaction);
    const input: CheckInput = { ctx: rec.ctx!, interaction, rule, authorization: req.headers.authorization, contentLength, principal };
    await runChecks(input, settings, GATEWAY_CHECKS);
    await api.handle(new Exchange(req, res, rec.ctx!, interaction, rule, principal, NO_REWRITE, settings));
  }

  /** Synchronous when every check could be decided at once; a promise otherwise. */
  private authorize(
    req: IncomingMessage,
    res: ServerResponse,
    settings: Settings,
    ctx: CheckInput['ctx'],
    interaction: Interaction,
    principal: Principal,
    rec: AccessRecord,
  ): Promise<void> | undefined {
    const chunked = req.headers['transfer-encoding'] !== undefined;
    const cl = req.headers['content-length'];
    const contentLength = cl === undefined ? undefined : Number(cl);
    // Node would forward such a body unframed (no length, no chunking) and the upstream would
    // read it as a second request: refuse bodies where FHIR has none.
    if (BODYLESS.has(req.method ?? '') && (chunked || (contentLength ?? 0) > 0)) {
      throw new GatewayError('BAD_REQUEST', `${req.method} requests must not carry a body`);
    }
    refuseEncodedBody(req.headers['content-encoding'], chunked || (contentLength ?? 0) > 0);
    const authorization = req.headers.authorization;
    if (interaction.kind === 'batch')
      return this.bundle(req, res, settings, { ctx, interaction, authorization, contentLength, principal }, rec);
    const input: CheckInput = { ctx, interaction, rule: settings.policy.ruleFor(interaction), authorization, contentLength, principal };
    const pending = runChecks(input, settings);
    if (pending) return pending.then(() => this.dispatch(req, res, input, settings, rec));
    return this.dispatch(req, res, input, settings, rec);
  }

  /** The exchange is made (`_inflate` is the gateway's parameter: read here, never passed on) and routed. */
  private dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    input: CheckInput,
    settings: Settings,
    rec: AccessRecord,
  ): Promise<void> | undefined {
    // A request that reaches other types runs under the smallest limits of every rule it reached.
    const reach = settings.policy.reachOf(input.interaction);
    const rule = reach === OWN_ONLY ? input.rule : settings.policy.strictest(input.rule, settings.policy.reachedRules(reach));
    const rewrite = rewriteParams(input.interaction, rule.inflate, readGrant(input.principal, rule));
    const { interaction } = rewrite;
    rec.interaction = interaction;
    const guard = answerGuard(interaction, input.principal, rule, reach);
    // A write whose type's read rules refuse the caller: done, its answer without the resource.
    const withhold = input.principal.withholdAnswer === true && !rewrite.params.withhold;
    const params =
      guard || withhold ? { ...rewrite.params, ...(guard ? { guard } : {}), ...(withhold ? { withhold } : {}) } : rewrite.params;
    // Links past the budget may be signed URLs for this caller (`signedUrls.links`): made from the exchange, once it exists.
    let exchange: Exchange | undefined;
    let link: ((owner: string, blob: BlobRef) => string | undefined) | undefined;
    const linked =
      settings.signer && settings.config.signedUrls.links
        ? { ...params, signedLink: (owner: string, blob: BlobRef) => (link ??= exchange && this.d.files.linker(exchange))?.(owner, blob) }
        : params;
    const x = new Exchange(req, res, input.ctx, interaction, rule, input.principal, linked, settings);
    exchange = x;
    const route = routeFor(this.d.routes, interaction, req);
    if (input.principal.compartmentRead === true) return this.d.patientReads.requirePatientRead(x).then(() => route.handle(x) ?? undefined);
    return route.handle(x) ?? undefined;
  }

  /**
   * Batch and transaction Bundles are authorized entry by entry (security/bundle.ts). The body is
   * spooled (never held in memory) while its entries are read; only after every entry passed does
   * the upstream get it.
   */
  private async bundle(req: IncomingMessage, res: ServerResponse, settings: Settings, r: BundleRequest, rec: AccessRecord): Promise<void> {
    if (!JSON_BODY.test(req.headers['content-type'] ?? '')) {
      throw new GatewayError('UNSUPPORTED_MEDIA', 'batch and transaction Bundles must be sent as application/fhir+json');
    }
    const requestRule = await authorizeBundleRequest(r, settings);
    // Only reached after the checks passed: a refused upload is answered before its body is sent.
    if (req.headers.expect?.toLowerCase() === '100-continue') res.writeContinue();
    const scanned = await spoolAndScanBundle(req, {
      dir: settings.config.server.spoolDir,
      maxBytes: requestRule.limits.maxRequestBytes,
      maxEntries: settings.config.bundles.maxEntries,
    });
    // The spool file holds the whole body (PHI): it goes when the exchange ends, however it
    // ends. finished() also fires for a response that closed while we were still checking.
    finished(res, () => void unlink(scanned.file).catch(() => undefined));
    const bundle = await authorizeBundle(r, scanned, settings);
    // A client that went away while we checked gets nothing executed on its behalf.
    if (res.destroyed || req.socket.destroyed) return;
    const reader = bundleReadGrant(r.principal);
    const { params: base, interaction } = rewriteParams(bundle.interaction, bundle.rule.inflate, reader);
    // Known only now, from the body: a transaction is logged, audited and counted as one.
    rec.interaction = interaction;
    // A write entry's answer carries the resource only if the caller may read its type (as a write sent alone).
    const withheld = new Set([...bundle.withheld, ...bundle.writes.flatMap((w, i) => (w && !reader.mayRead(w.resourceType) ? [i] : []))]);
    const params = {
      ...base,
      ...(withheld.size > 0 ? { withheldEntries: withheld } : {}),
      ...(bundle.guards.size > 0 ? { entryGuards: bundle.guards } : {}),
    };
    return this.d.bundles.write(new Exchange(req, res, r.ctx, interaction, bundle.rule, r.principal, params, settings), scanned);
  }

  private refuse(req: IncomingMessage, res: ServerResponse, err: GatewayError, rec: AccessRecord): void {
    rec.code = err.code;
    if (err.code === 'INTERNAL') this.d.log.error({ reqId: rec.id, err: err.cause }, 'internal error');
    // An outage (the store, the key set, the upstream) says why in the log: the client's
    // OperationOutcome names only the kind. Codes and messages of the cause, never content.
    else if (err.status >= 500)
      this.d.log.warn({ reqId: rec.id, code: err.code, cause: causeOf(err.cause) }, 'request failed: a dependency');
    sendError(req, res, err, rec.id);
  }
}

/** A failure's code and message, for the log (an error chain's first two links). */
function causeOf(cause: unknown): string | undefined {
  if (cause === undefined) return undefined;
  const e = cause as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown };
  const head = [
    typeof e.code === 'string' ? e.code : typeof e.name === 'string' ? e.name : undefined,
    typeof e.message === 'string' ? e.message : String(cause),
  ]
    .filter(Boolean)
    .join(' ');
  const inner = e.cause ? causeOf(e.cause) : undefined;
  return `${head}${inner ? ` (${inner})` : ''}`.slice(0, 300);
}
