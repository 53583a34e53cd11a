/**
 * The one error catalogue. Every refusal the gateway makes is one of these codes; the code is
 * stable (clients and dashboards switch on it), the message is for humans. Each code is
 * documented in docs/errors.md and test/errors/catalogue.test.ts checks that nothing is missing there.
 */

/** FHIR OperationOutcome.issue.code values we use (http://hl7.org/fhir/valueset-issue-type.html). */
export type IssueType =
  | 'invalid'
  | 'structure'
  | 'required'
  | 'value'
  | 'security'
  | 'login'
  | 'forbidden'
  | 'too-long'
  | 'not-supported'
  | 'not-found'
  | 'processing'
  | 'exception'
  | 'timeout'
  | 'transient'
  | 'conflict';

interface ErrorDef {
  readonly status: number;
  readonly issue: IssueType;
  readonly message: string;
}

function def(status: number, issue: IssueType, message: string): ErrorDef {
  return { status, issue, message };
}

export const ERRORS = {
  // 400: requests we refuse to interpret because an upstream could read them differently.
  AMBIGUOUS_PATH: def(400, 'invalid', 'The request path is ambiguous and was refused'),
  ABSOLUTE_FORM_TARGET: def(400, 'invalid', 'Absolute-form request targets are not accepted'),
  METHOD_OVERRIDE: def(400, 'invalid', 'Method override headers are not accepted'),
  DUPLICATE_HEADER: def(400, 'invalid', 'A header that must appear once appeared several times'),
  BAD_FORWARDED_HEADER: def(400, 'invalid', 'A forwarding header is malformed'),
  BAD_REQUEST: def(400, 'invalid', 'The request is malformed'),
  BAD_BUNDLE: def(400, 'structure', 'The Bundle cannot be authorized entry by entry'),
  REQUEST_TIMEOUT: def(408, 'timeout', 'The request did not arrive in time'),
  HEADERS_TOO_LARGE: def(431, 'too-long', 'The request headers are too large'),
  // 401/403: the security pipeline.
  TOKEN_MISSING: def(401, 'login', 'A bearer token is required'),
  INVALID_TOKEN: def(401, 'login', 'The bearer token is not valid'),
  INSECURE_TRANSPORT: def(403, 'security', 'HTTPS is required'),
  FORBIDDEN: def(403, 'forbidden', 'The client address is not allowed'),
  INSUFFICIENT_SCOPE: def(403, 'forbidden', 'The token does not grant this interaction'),
  GRAPHQL_MUTATION: def(403, 'not-supported', 'GraphQL mutations are not accepted'),
  // 403: signed file URLs (docs/signed-urls.md). Expired and not-yet-valid are told apart so a client knows to refresh.
  SIGNATURE_INVALID: def(403, 'security', 'The signed URL is not valid'),
  SIGNATURE_EXPIRED: def(403, 'security', 'The signed URL has expired; ask for a new one'),
  SIGNATURE_NOT_YET_VALID: def(403, 'security', 'The signed URL is not valid yet'),
  SIGNATURE_REVOKED: def(403, 'security', 'The signed URL was revoked'),
  SIGNATURE_PERMISSION: def(403, 'forbidden', 'The signed URL does not permit this method'),
  // 404/405: outside what the gateway serves.
  NOT_FOUND: def(404, 'not-found', 'Not found'),

  // 409: the admin API, where the blob's state or the FHIR server's resources forbid the change.
  BLOB_IN_USE: def(409, 'conflict', 'A resource in the FHIR server refers to this blob'),
  LINK_UNVERIFIED: def(409, 'conflict', 'The resource does not refer to this blob'),
  BLOB_CHANGED: def(409, 'conflict', 'The blob changed while the call was under way'),
  CONTENT_LINK_UNRESOLVED: def(409, 'conflict', 'The attachment links to stored content the resource no longer has'),
  // 409: the files GraphQL API, binding uploaded files to a resource.
  FILE_NOT_BINDABLE: def(409, 'conflict', 'The file is not an unbound upload of this caller for this subject'),
  FILE_MISMATCH: def(409, 'conflict', "The attachment's hash or type is not the uploaded file's"),
  METHOD_NOT_ALLOWED: def(405, 'not-supported', 'This method is not supported on this path'),
  NOT_ACCEPTABLE: def(406, 'not-supported', 'The response cannot be given in the requested format'),
  PRECONDITION_FAILED: def(412, 'conflict', 'The resource has changed since the version the request names'),
  // 413/415/417: body limits and types.
  PAYLOAD_TOO_LARGE: def(413, 'too-long', 'The request body exceeds the size limit'),
  UNSUPPORTED_MEDIA: def(415, 'not-supported', 'The content type is not accepted here'),
  UNSUPPORTED_ENCODING: def(415, 'not-supported', 'Request bodies are accepted only without Content-Encoding'),
  EXPECTATION_FAILED: def(417, 'not-supported', 'Only Expect: 100-continue is supported'),
  RANGE_NOT_SATISFIABLE: def(416, 'value', 'The requested range is not within the content'),
  // 5xx: the upstream, or us.
  UPSTREAM_UNAVAILABLE: def(502, 'transient', 'The upstream FHIR server could not be reached'),
  UPSTREAM_INVALID: def(502, 'invalid', 'The upstream FHIR server answered with something the gateway cannot check'),
  UPSTREAM_TIMEOUT: def(504, 'timeout', 'The upstream FHIR server did not answer in time'),
  NOT_READY: def(503, 'transient', 'The gateway is not ready'),
  AUTH_UNAVAILABLE: def(503, 'transient', "The identity provider's signing keys could not be fetched; try again shortly"),
  STORAGE_UNAVAILABLE: def(503, 'transient', 'The object store could not be reached'),
  BLOB_UNREADABLE: def(500, 'exception', 'The stored content cannot be read'),
  INTERNAL: def(500, 'exception', 'Internal gateway error'),
  // Not an answer: the process does not start (exit 78), or a reload keeps the previous policy.
  CONFIG_INVALID: def(500, 'exception', 'Invalid configuration'),
} as const satisfies Record<string, ErrorDef>;

export type ErrorCode = keyof typeof ERRORS;

/** Where codes appear in OperationOutcome.issue.details.coding.system. */
export const ERROR_CODE_SYSTEM = 'urn:fhir-binary-gateway:error';

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly issue: IssueType;
  /** Extra response headers, e.g. WWW-Authenticate on 401/403. */
  readonly headers: Readonly<Record<string, string>>;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown; headers?: Record<string, string> }) {
    const d = ERRORS[code];
    // The detail is shown to the client: callers must never put tokens or body content in it.
    super(detail ? `${d.message}: ${detail}` : d.message, options?.cause ? { cause: options.cause } : undefined);
    this.name = 'GatewayError';
    this.code = code;
    this.detail = detail;
    this.status = d.status;
    this.issue = d.issue;
    this.headers = options?.headers ?? {};
  }
}

/**
 * A configuration problem, or several: each names the file, the key path and what was expected.
 * The gateway refuses to start on one (exit 78, EX_CONFIG); a reload that finds one keeps the
 * configuration it had.
 */
export class ConfigError extends GatewayError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super('CONFIG_INVALID', problems.join('; '));
    this.name = 'ConfigError';
    this.problems = problems;
    this.message = `Invalid configuration:\n  ${problems.join('\n  ')}`;
  }
}

/** The same error, said of one Bundle entry. */
export function forEntry(err: GatewayError, index: number): GatewayError {
  return new GatewayError(err.code, `Bundle entry ${index}${err.detail ? `: ${err.detail}` : ''}`, {
    cause: err,
    headers: { ...err.headers },
  });
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError;
}
