/**
 * The HTTP side of the demo upstream (fhir-upstream.ts): reading bodies and queries the way a
 * plain REST FHIR server does, writing resources and raw Binary content back.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { MemoryRepository } from '@medplum/fhir-router';

export type Resource = Parameters<MemoryRepository['createResource']>[0];
export type Binary = Extract<Resource, { resourceType: 'Binary' }>;
export type OperationOutcome = Extract<Resource, { resourceType: 'OperationOutcome' }>;
type CapabilityStatement = Extract<Resource, { resourceType: 'CapabilityStatement' }>;
export type IssueType = OperationOutcome['issue'][number]['code'];
type ResourceType = NonNullable<CapabilityStatement['rest']>[number]['resource'] extends (infer R)[] | undefined
  ? R extends { type: infer T }
    ? T
    : never
  : never;

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';

export type ParsedBody = { body: unknown } | { error: { status: number; issue: IssueType; message: string } };

export function parseRequestBody(method: string, segments: string[], headers: IncomingHttpHeaders, body: Buffer): ParsedBody {
  const contentType = headers['content-type'];
  const mediaType = mediaTypeOf(contentType ?? '');
  const rawBinaryWrite =
    segments[0] === 'Binary' && ((method === 'POST' && segments.length === 1) || (method === 'PUT' && segments.length === 2));
  if (rawBinaryWrite && !isFhirOrJson(mediaType)) {
    const binary: Binary = {
      resourceType: 'Binary',
      contentType: contentType ?? 'application/octet-stream',
      ...(segments[1] === undefined ? {} : { id: segments[1] }),
      ...(body.length > 0 ? { data: body.toString('base64') } : {}),
    };
    const securityContext = headers['x-security-context'];
    if (typeof securityContext === 'string') binary.securityContext = { reference: securityContext };
    return { body: binary };
  }
  if (body.length === 0) return { body: undefined };
  if (mediaType === 'application/x-www-form-urlencoded') return { body: parseQuery(body.toString('utf8')) };
  if (!isJson(mediaType)) {
    return { error: { status: 415, issue: 'not-supported', message: `Unsupported Content-Type: ${contentType ?? '(none)'}` } };
  }
  try {
    return { body: JSON.parse(body.toString('utf8')) };
  } catch (err) {
    return { error: { status: 400, issue: 'structure', message: `Invalid JSON: ${(err as Error).message}` } };
  }
}

/** Repeated parameters become arrays, as Medplum's own query parser does. */
export function parseQuery(search: string): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = Object.create(null);
  for (const [name, value] of new URLSearchParams(search)) {
    const existing = query[name];
    query[name] = existing === undefined ? value : [existing, value].flat();
  }
  return query;
}

export function mediaTypeOf(header: string): string {
  return (header.split(';')[0] ?? '').trim().toLowerCase();
}

export function isJson(mediaType: string): boolean {
  return mediaType === 'application/json' || mediaType.endsWith('+json');
}

export function isFhirOrJson(mediaType: string): boolean {
  return isJson(mediaType) || mediaType.startsWith('application/fhir+');
}

export function isBinaryRead(method: string, segments: string[]): boolean {
  return method === 'GET' && segments[0] === 'Binary' && (segments.length === 2 || (segments.length === 4 && segments[2] === '_history'));
}

/** A client that asks for a non-FHIR type (e.g. `application/pdf`) gets the bytes themselves. */
export function wantsRawBinary(accept: string | undefined): boolean {
  if (accept === undefined || accept.trim() === '') return false;
  return !accept.split(',').some((range) => isFhirOrJson(mediaTypeOf(range)));
}

export function sendRawBinary(res: ServerResponse, head: boolean, status: number, headers: Record<string, string>, binary: Binary): void {
  const bytes = Buffer.from(binary.data ?? '', 'base64');
  res.writeHead(status, {
    ...headers,
    'Content-Type': binary.contentType ?? 'application/octet-stream',
    'Content-Length': bytes.length,
  });
  res.end(head ? undefined : bytes);
}

export function send(res: ServerResponse, head: boolean, status: number, headers: Record<string, string>, resource: Resource): void {
  const json = JSON.stringify(resource);
  res.writeHead(status, { ...headers, 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(json) });
  res.end(head ? undefined : json);
}

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function operationOutcome(code: IssueType, text: string): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text } }] };
}

export function normalizeBasePath(basePath: string): string {
  const trimmed = basePath.replace(/\/+$/, '');
  return trimmed === '' || trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

export function capabilityStatement(resourceTypes: readonly ResourceType[]): CapabilityStatement {
  const interactions = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'] as const;
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'fhir-binary-gateway demo upstream (Medplum fhir-router, in memory)' },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [
      {
        mode: 'server',
        interaction: [{ code: 'batch' }, { code: 'transaction' }],
        resource: resourceTypes.map((type) => ({ type, interaction: interactions.map((code) => ({ code })) })),
      },
    ],
  };
}

/**
 * The SMART App Launch discovery document (`[base]/.well-known/smart-configuration`,
 * https://hl7.org/fhir/smart-app-launch/conformance.html). The demo has no authorization server:
 * the endpoints only show the shape a real deployment's identity provider would publish.
 */
export function smartConfiguration(baseUrl: string): Record<string, unknown> {
  const origin = new URL(baseUrl).origin;
  return {
    issuer: `${origin}/auth`,
    authorization_endpoint: `${origin}/auth/authorize`,
    token_endpoint: `${origin}/auth/token`,
    grant_types_supported: ['authorization_code', 'client_credentials'],
    code_challenge_methods_supported: ['S256'],
    scopes_supported: ['openid', 'fhirUser', 'launch/patient', 'patient/*.rs', 'user/*.cruds', 'system/*.rs'],
    capabilities: ['launch-standalone', 'client-public', 'client-confidential-symmetric', 'context-standalone-patient', 'permission-v2'],
  };
}

/** Plain JSON (not a FHIR resource), e.g. the SMART discovery document. */
export function sendJson(res: ServerResponse, head: boolean, body: unknown): void {
  const json = JSON.stringify(body);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json) });
  res.end(head ? undefined : json);
}
