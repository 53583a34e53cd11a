import type { IncomingMessage } from 'node:http';
import {
  execute,
  GraphQLError,
  NoSchemaIntrospectionCustomRule,
  parse,
  specifiedRules,
  validate,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLSchema,
  type ValidationRule,
} from 'graphql';
import { GatewayError, isGatewayError } from '../errors/catalogue.js';
import type { Exchange } from '../security/exchange.js';
import { noteCarriedError } from '../lib/respond.js';
import type { FileBinding } from './bind.js';
import type { FilesApi, FilesContext } from './files.js';
import { depthAndFieldLimit } from './limits.js';
import { MultipartRequest } from './multipart.js';
import { filesSchema, UploadRef } from './schema.js';

const GRAPHQL_RESPONSE = 'application/graphql-response+json';
/** Headers a browser cannot send cross-site without a preflight: one must be on a multipart upload (CSRF). */
const PREFLIGHT_HEADERS = ['graphql-require-preflight', 'apollo-require-preflight', 'x-apollo-operation-name'];

interface Operations {
  query: string;
  variables?: Record<string, unknown>;
  operationName?: string;
}

/**
 * `POST {graphql.path}`: the files API of seed 000 over GraphQL (docs/graphql.md), with
 * graphql-js (the reference implementation) and GraphQL-over-HTTP answers. The request has passed
 * the security pipeline as `operation: gateway-graphql`; each field is authorized on its own
 * (files.ts). Uploads follow the GraphQL multipart request spec and stream into the store.
 */
export class GraphqlApi {
  private readonly schema: GraphQLSchema = filesSchema();

  constructor(
    private readonly files: FilesApi,
    private readonly binding: FileBinding,
  ) {}

  async handle(x: Exchange): Promise<void> {
    const { req } = x;
    if (req.method !== 'POST') throw new GatewayError('METHOD_NOT_ALLOWED', 'the GraphQL API takes POST', { headers: { allow: 'POST' } });
    let ops: Operations;
    let multipart: MultipartRequest | undefined;
    try {
      ({ ops, multipart } = await this.read(x));
    } catch (err) {
      // A body that cannot be read as one GraphQL operation: a request error, in GraphQL's shape.
      if (!isGatewayError(err)) throw err;
      noteCarriedError(x.res, err);
      this.send(x, err.status, { errors: [new GraphQLError(err.message, { extensions: { code: err.code, status: err.status } })] });
      return;
    }
    try {
      const result = await this.run(x, ops, multipart);
      const carried = carriedError(result.body);
      if (carried) noteCarriedError(x.res, carried);
      this.send(x, result.status, result.body);
    } finally {
      multipart?.stop();
    }
  }

  /** The operation, from a JSON body or a multipart request's `operations` and `map` (its files still to come). */
  private async read(x: Exchange): Promise<{ ops: Operations; multipart?: MultipartRequest }> {
    const { req } = x;
    const limits = x.settings.config.graphql;
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type === 'multipart/form-data') {
      if (!PREFLIGHT_HEADERS.some((h) => typeof req.headers[h] === 'string' && req.headers[h] !== ''))
        throw new GatewayError(
          'BAD_REQUEST',
          'a multipart GraphQL request needs a GraphQL-Require-Preflight header (or Apollo-Require-Preflight): it keeps browsers from sending one cross-site',
        );
      x.continue100();
      const opened = await MultipartRequest.open(req, {
        maxDocumentBytes: limits.maxDocumentBytes,
        maxFiles: limits.maxFiles,
        maxRequestBytes: x.rule.limits.maxRequestBytes,
        rule: x.rule.name,
      });
      try {
        const ops = operationsOf(opened.operations);
        placeUploads(ops, opened.map, limits.maxFiles);
        return { ops, multipart: opened.request };
      } catch (err) {
        opened.request.stop();
        throw err;
      }
    }
    if (type === 'application/json' || type === 'application/graphql+json') {
      x.continue100();
      return { ops: operationsOf(await bodyText(req, limits.maxDocumentBytes)) };
    }
    throw new GatewayError('UNSUPPORTED_MEDIA', 'send the operation as application/json, or uploads as multipart/form-data');
  }

  private async run(
    x: Exchange,
    ops: Operations,
    multipart: MultipartRequest | undefined,
  ): Promise<{ status: number; body: ExecutionResult }> {
    const limits = x.settings.config.graphql;
    let document: DocumentNode;
    try {
      document = parse(ops.query, { noLocation: false, maxTokens: 10_000 });
    } catch (err) {
      return requestError(err as GraphQLError);
    }
    const rules: ValidationRule[] = [...specifiedRules, depthAndFieldLimit(limits.maxDepth, limits.maxFields, limits.maxRootFields)];
    if (!limits.introspection) rules.push(NoSchemaIntrospectionCustomRule);
    const errors = validate(this.schema, document, rules, { maxErrors: 20 });
    if (errors.length > 0) return { status: 400, body: { errors: errors.map((e) => withCode(e, 'BAD_REQUEST')) } };
    const context: FilesContext = {
      x,
      take: (ref) => {
        if (!multipart) return Promise.reject(new GatewayError('BAD_REQUEST', 'files come in a multipart request'));
        return multipart.take(ref.key);
      },
    };
    const result = await execute({
      schema: this.schema,
      document,
      rootValue: {
        uploadFile: (args: never) => this.files.uploadFile(args, context),
        file: (args: never) => this.files.file(args, context),
        refreshFileUrl: (args: never) => this.files.refreshFileUrl(args, context),
        createDocumentReference: (args: { resource: unknown }) => this.binding.create('DocumentReference', args.resource, x),
        createMedia: (args: { resource: unknown }) => this.binding.create('Media', args.resource, x),
      },
      contextValue: context,
      variableValues: ops.variables ?? {},
      ...(ops.operationName ? { operationName: ops.operationName } : {}),
    });
    // A variable that did not coerce (no data at all) is a request error (GraphQL over HTTP).
    if (!('data' in result) || result.data === undefined)
      return { status: 400, body: { errors: (result.errors ?? []).map((e) => withCode(e, 'BAD_REQUEST')) } };
    return { status: 200, body: { ...result, ...(result.errors ? { errors: result.errors.map(fieldError) } : {}) } };
  }

  private send(x: Exchange, status: number, body: ExecutionResult): void {
    const accept = x.req.headers.accept ?? '';
    const modern = accept.includes(GRAPHQL_RESPONSE) || !accept.includes('application/json');
    const text = JSON.stringify(body);
    x.res.writeHead(modern ? status : 200, {
      'content-type': `${modern ? GRAPHQL_RESPONSE : 'application/json'}; charset=utf-8`,
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-request-id': x.ctx.id,
      // A body not read to its end (a refused upload, a request refused as it was read) is not waited for.
      ...(x.req.complete ? {} : { connection: 'close' }),
    });
    x.res.end(text);
  }
}

/** The `operations` JSON: one operation (batches are not taken). */
function operationsOf(text: string): Operations {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw new GatewayError('BAD_REQUEST', 'the GraphQL request is not JSON');
  }
  if (Array.isArray(o)) throw new GatewayError('BAD_REQUEST', 'batched GraphQL operations are not taken: send one operation per request');
  const op = o as Partial<Operations> | null;
  if (typeof op !== 'object' || op === null || typeof op.query !== 'string')
    throw new GatewayError('BAD_REQUEST', "the GraphQL request has no 'query'");
  if (op.variables !== undefined && op.variables !== null && (typeof op.variables !== 'object' || Array.isArray(op.variables)))
    throw new GatewayError('BAD_REQUEST', "'variables' is an object");
  if (op.operationName !== undefined && op.operationName !== null && typeof op.operationName !== 'string')
    throw new GatewayError('BAD_REQUEST', "'operationName' is a string");
  return {
    query: op.query,
    ...(op.variables ? { variables: op.variables } : {}),
    ...(op.operationName ? { operationName: op.operationName } : {}),
  };
}

/** The multipart `map`: each file key names one `variables.…` path, where its UploadRef goes. */
function placeUploads(ops: Operations, mapText: string, maxFiles: number): void {
  let map: unknown;
  try {
    map = JSON.parse(mapText);
  } catch {
    throw new GatewayError('BAD_REQUEST', "the 'map' field is not JSON");
  }
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new GatewayError('BAD_REQUEST', "the 'map' field is an object");
  const entries = Object.entries(map as Record<string, unknown>);
  if (entries.length > maxFiles) throw new GatewayError('PAYLOAD_TOO_LARGE', 'more files than graphql.maxFiles');
  ops.variables ??= {};
  for (const [key, paths] of entries) {
    if (!Array.isArray(paths) || paths.length !== 1 || typeof paths[0] !== 'string')
      throw new GatewayError('BAD_REQUEST', `the map gives file '${key.slice(0, 32)}' one variables path (a file is read once)`);
    const steps = paths[0].split('.');
    if (steps[0] !== 'variables' || steps.length < 2) throw new GatewayError('BAD_REQUEST', "map paths start with 'variables.'");
    // Own members only: a path through `__proto__` or `constructor` must not reach a prototype.
    let at: Record<string, unknown> = ops.variables;
    for (let i = 1; i < steps.length - 1; i++) {
      const next = Object.hasOwn(at, steps[i]) ? at[steps[i]] : undefined;
      if (typeof next !== 'object' || next === null)
        throw new GatewayError('BAD_REQUEST', `the map path '${paths[0].slice(0, 64)}' names no variable`);
      at = next as Record<string, unknown>;
    }
    const last = steps[steps.length - 1];
    if (!Object.hasOwn(at, last) || at[last] !== null)
      throw new GatewayError('BAD_REQUEST', `the map path '${paths[0].slice(0, 64)}' must name a variable set to null`);
    at[last] = new UploadRef(key);
  }
}

/** A JSON request body, bounded: an operation is small. */
async function bodyText(req: IncomingMessage, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) throw new GatewayError('PAYLOAD_TOO_LARGE', `a GraphQL request is at most graphql.maxDocumentBytes (${max}) bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function requestError(err: GraphQLError): { status: number; body: ExecutionResult } {
  return { status: 400, body: { errors: [withCode(err, 'BAD_REQUEST')] } };
}

/** A request error GraphQL itself found (parse, validation, coercion): BAD_REQUEST, 400. */
function withCode(e: GraphQLError, code: 'BAD_REQUEST'): GraphQLError {
  return new GraphQLError(e.message, { nodes: e.nodes, path: e.path, extensions: { ...e.extensions, code, status: 400 } });
}

/**
 * The error an answer carries that the audit trail judges it by: the first server failure (5xx),
 * else the first refusal. Undefined when every field was answered.
 */
function carriedError(body: ExecutionResult): { code: string; status: number } | undefined {
  const carried = (body.errors ?? []).map((e) => e.extensions as { code?: unknown; status?: unknown } | undefined);
  const known = carried.filter((e): e is { code: string; status: number } => typeof e?.code === 'string' && typeof e.status === 'number');
  return known.find((e) => e.status >= 500) ?? known[0];
}

/** A resolver's error: the catalogue's code and status for ours, INTERNAL (without its text) for anything else. */
function fieldError(e: GraphQLError): GraphQLError {
  const cause = e.originalError;
  if (cause && isGatewayError(cause))
    return new GraphQLError(cause.message, { path: e.path, extensions: { code: cause.code, status: cause.status } });
  if (cause) return new GraphQLError('internal error', { path: e.path, extensions: { code: 'INTERNAL', status: 500 } });
  return withCode(e, 'BAD_REQUEST');
}
