// What tests of the files GraphQL API share: one uploadFile as a multipart request per the spec
// (fetch's FormData: a real client's encoding), and one JSON operation.
import type { Stack } from './binary-stack.js';

export interface GqlBody {
  data?: Record<string, Record<string, unknown> | null> | null;
  errors?: { message: string; extensions?: { code?: string; status?: number } }[];
}

export interface UploadOptions {
  /** Default Patient/1. */
  readonly forEntity?: string;
  /** Default application/pdf. */
  readonly contentType?: string;
  /** The fields asked of the answer; default `fileId storagePath`. */
  readonly select?: string;
}

/** The multipart form of one uploadFile: `operations`, `map`, then the file. */
export function uploadForm(file: Buffer, o: UploadOptions = {}): FormData {
  const form = new FormData();
  const query = `mutation($f: Upload!, $for: String!, $type: String!) { uploadFile(forEntity: $for, data: $f, contentType: $type) { ${
    o.select ?? 'fileId storagePath'
  } } }`;
  form.append(
    'operations',
    JSON.stringify({ query, variables: { f: null, for: o.forEntity ?? 'Patient/1', type: o.contentType ?? 'application/pdf' } }),
  );
  form.append('map', JSON.stringify({ 0: ['variables.f'] }));
  form.append('0', new Blob([file]), 'f');
  return form;
}

/** Sends uploadForm's request with the CSRF preflight header; the answer's body. */
export async function gqlUpload(s: Stack, auth: Record<string, string>, file: Buffer, o: UploadOptions = {}): Promise<GqlBody> {
  const r = await fetch(`${s.gw.url}/graphql`, {
    method: 'POST',
    headers: { ...auth, 'graphql-require-preflight': '1' },
    body: uploadForm(file, o),
  });
  return (await r.json()) as GqlBody;
}

/** One operation as JSON; the answer's body. */
export async function gqlJson(
  s: Stack,
  auth: Record<string, string>,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<GqlBody> {
  const r = await fetch(`${s.gw.url}/graphql`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return (await r.json()) as GqlBody;
}

/**
 * The REST control of a GraphQL write: the same DocumentReference POSTed to the FHIR endpoint with
 * the same token (an external attachment URL); the answer's status.
 */
export async function restCreateStatus(s: Stack, auth: Record<string, string>, fields: Record<string, unknown>): Promise<number> {
  const r = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { url: 'http://x.test/a' } }],
      ...fields,
    }),
  });
  await r.arrayBuffer();
  return r.status;
}

/** The first error's catalogue code. */
export const codeOf = (b: GqlBody): string | undefined => b.errors?.[0]?.extensions?.code;

/** The storagePath an upload answered, or one that names no file (so a refused upload still makes a bind to try). */
export const storagePathOf = (b: GqlBody): string =>
  (b.data?.['uploadFile']?.['storagePath'] as string | undefined) ?? 'urn:fhir-binary-gateway:file:none';
