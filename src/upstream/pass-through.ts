import { createReadStream } from 'node:fs';
import { readFile, stat, unlink } from 'node:fs/promises';
import { finished, PassThrough } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { GatewayError, isGatewayError } from '../errors/catalogue.js';
import type { Interaction } from '../fhir/interaction.js';
import { SizeLimit } from '../lib/size-limit.js';
import { clientGone, spoolThrough } from '../lib/spool-file.js';
import { MAX_GRAPHQL_CHARS, requireGraphqlQuery } from '../fhir/graphql-document.js';
import { Externalizer } from '../rewrite/externalize.js';
import { operationBodyGuard } from '../rewrite/operation-body-guard.js';
import { requireJson, rewritesResponse } from '../rewrite/params.js';
import { authorizeConditionalReference } from '../security/bundle.js';
import type { Exchange } from '../security/exchange.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { Forwarder } from './forwarder.js';

const JSON_BODY = /^application\/(fhir\+)?json\s*(;|$)/i;
const FORM_BODY = /^application\/x-www-form-urlencoded\s*(;|$)/i;

/**
 * What the gateway does not serve itself goes to the upstream as it came: the two routes of the
 * route table that forward (http/routes.ts).
 */
export class PassThroughRoutes {
  constructor(private readonly forwarder: Forwarder) {}

  /**
   * Everything not served by the binary plane. Answers that may carry resources go through the
   * rewrite engine (the client must then take FHIR JSON); a declared length is enforced by Node's
   * parser, so only chunked bodies need counting.
   */
  forward(x: Exchange): void {
    // A bodyless $graphql carries its document in the query.
    if (x.interaction.operation === 'graphql') requireGraphqlQuery(onlyQuery(new URLSearchParams(x.interaction.query)) ?? '');
    const rewrite = rewritesResponse(x.interaction) ? x.rewrite : undefined;
    if (rewrite) requireJson(x.req, x.interaction);
    x.continue100();
    const chunked = x.req.headers['transfer-encoding'] !== undefined;
    const body = chunked ? x.req.pipe(new SizeLimit(x.rule.limits.maxRequestBytes, x.rule.name)) : undefined;
    this.forwarder.forward(x, { ...(body ? { body } : {}), ...(rewrite ? { rewrite } : {}) });
  }

  /** An operation whose body could store attachment content: every body but form-encoded parameters, and every $graphql body. */
  static checksBody(i: Interaction, req: IncomingMessage): boolean {
    if (i.kind !== 'operation') return false;
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    return hasBody && (i.operation === 'graphql' || !FORM_BODY.test(req.headers['content-type'] ?? ''));
  }

  /**
   * An operation may store what it is sent ($process-message, $submit-attachment, …), so its body
   * is held to the same rule as a write: no attachment data at or above externalize.minBytes, no
   * blob reference of ours. It is spooled while checked (never held in memory), then sent on
   * unchanged with its length. Only JSON can be checked: other bodies are refused (form-encoded
   * parameters, which carry no attachments, pass as they are).
   */
  async operationBody(x: Exchange): Promise<void> {
    const { req, res, rule, interaction: i } = x;
    const rewrite = rewritesResponse(i) ? x.rewrite : undefined;
    if (rewrite) requireJson(req, i);
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
    const { config } = x.settings;
    const minBytes = config.externalize.minBytes;
    const declared = req.headers['content-length'];
    if (graphql && declared !== undefined && Number(declared) > minBytes) throw graphqlTooLarge(minBytes);
    x.continue100();
    const maxBytes = graphql ? Math.min(minBytes, rule.limits.maxRequestBytes) : rule.limits.maxRequestBytes;
    const gone = clientGone(res);
    const content = json && !graphql ? contentCheck(x) : undefined;
    const checks = json ? [operationBodyGuard(minBytes), ...(content ? [content] : [])] : [new PassThrough()];
    const spooled = await spoolThrough(req, checks, {
      dir: config.server.spoolDir,
      kind: 'operation',
      maxBytes,
      signal: gone.signal,
    })
      .catch((err: unknown) => {
        throw graphql && isGatewayError(err) && err.code === 'PAYLOAD_TOO_LARGE' ? graphqlTooLarge(minBytes) : err;
      })
      .finally(() => gone.release());
    if (!spooled) return;
    const refs = content?.conditionalReferences ?? [];
    if (graphql || refs.length > 0)
      await (graphql ? requireGraphqlBody(x, spooled.file, json) : authorizeReferences(x, refs)).catch(async (err: unknown) => {
        await unlink(spooled.file).catch(() => undefined);
        throw err;
      });
    const body = createReadStream(spooled.file);
    finished(res, () => {
      body.destroy();
      void unlink(spooled.file).catch(() => undefined);
    });
    this.forwarder.forward(x, { body, contentLength: spooled.size, ...(rewrite ? { rewrite } : {}) });
  }
}

function graphqlTooLarge(minBytes: number): GatewayError {
  return new GatewayError(
    'PAYLOAD_TOO_LARGE',
    `a $graphql body may not exceed externalize.minBytes (${minBytes} bytes): a mutation could carry attachment data past the rewrite`,
  );
}

/**
 * The document of a POSTed $graphql (R4 graphql.html: a JSON body's `query`, a form's `query`, or
 * the raw document), and of a `query` parameter, must be queries only (fhir/graphql-document.ts).
 * The body was bounded by externalize.minBytes while spooled; past the parse bound it is refused unread.
 */
async function requireGraphqlBody(x: Exchange, file: string, json: boolean): Promise<void> {
  const inQuery = onlyQuery(new URLSearchParams(x.interaction.query));
  if (inQuery !== null) requireGraphqlQuery(inQuery);
  if ((await stat(file)).size > MAX_GRAPHQL_CHARS * 4) {
    throw new GatewayError('PAYLOAD_TOO_LARGE', `a GraphQL document may not exceed ${MAX_GRAPHQL_CHARS} characters`);
  }
  const text = await readFile(file, 'utf8');
  let document: unknown = text;
  if (json) {
    try {
      document = (JSON.parse(text) as { query?: unknown } | null)?.query;
    } catch {
      throw new GatewayError('BAD_REQUEST', 'the GraphQL request body is not JSON');
    }
  } else if (FORM_BODY.test(x.req.headers['content-type'] ?? '')) {
    document = onlyQuery(new URLSearchParams(text));
  }
  if (typeof document !== 'string') {
    if (inQuery !== null && (document === undefined || document === null)) return;
    throw new GatewayError('BAD_REQUEST', 'the GraphQL request has no query document');
  }
  requireGraphqlQuery(document);
}

/**
 * The attachment data an operation body may carry (under externalize.minBytes, operationBodyGuard)
 * is checked like a write's: declared type allowed for its resource, content sniffed to match.
 * Nothing is stored: every threshold is out of reach, so the rewrite engine only checks.
 */
function contentCheck(x: Exchange): Externalizer {
  const { policy } = x.settings;
  return new Externalizer({
    store: NO_STORE,
    minBytes: Number.MAX_SAFE_INTEGER,
    binaryMinBytes: Number.MAX_SAFE_INTEGER,
    maxBytes: x.rule.limits.maxRequestBytes,
    allowedTypes: (rt) => policy.allowedTypes(rt),
  });
}

/** An operation that stores or resolves what it is sent runs a body's conditional references as searches too. */
async function authorizeReferences(x: Exchange, refs: readonly string[]): Promise<void> {
  for (const ref of refs) await authorizeConditionalReference(x.checkInput(), ref, x.settings);
}

/** The store of a check that never stores (contentCheck): any call is a bug, refused loudly. */
const NO_STORE = new Proxy({} as BlobStore, {
  get: () => () => Promise.reject(new Error('an operation body check does not store')),
});

/** The one `query` parameter: servers differ on which of two they run, so two are refused. */
function onlyQuery(params: URLSearchParams): string | null {
  const all = params.getAll('query');
  if (all.length > 1) throw new GatewayError('BAD_REQUEST', 'the GraphQL query may be given once');
  return all[0] ?? null;
}
