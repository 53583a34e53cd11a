import type { Interaction, InteractionKind } from '../fhir/interaction.js';
import type { BlobEvent, BlobEventLog, UrlGrant } from '../lib/blob-events.js';

/**
 * One audit record: who did what to which stored content, from where, when, with what outcome
 * and for what purpose (HIPAA's access audit trail). Never a token, a signature, a
 * query string or any content: resource ids, blob ids, byte counts and the caller's identity.
 */
export interface AuditRecord {
  /** Marks the line as an audit record where it shares a stream with the gateway's log. */
  readonly audit: 1;
  readonly time: string;
  /** The request's id (the access line's `reqId`); absent for what the gateway does on its own. */
  readonly reqId?: string;
  readonly action: AuditAction;
  readonly outcome: 'success' | 'refused' | 'failed' | 'aborted';
  readonly status?: number;
  /** The catalogue code of a refusal. */
  readonly code?: string;
  readonly who: AuditWho;
  readonly what: AuditWhat;
  readonly where?: { readonly address: string; readonly proto: string };
  /** The upload's purpose (X-File-Metadata). */
  readonly purpose?: string;
}

/** C/R/U/D/E, as FHIR AuditEvent.action has them, named. */
export type AuditAction = 'create' | 'read' | 'update' | 'delete' | 'execute';

export interface AuditWho {
  readonly sub?: string;
  readonly clientId?: string;
  readonly issuer?: string;
  /** The token's patient launch context. */
  readonly patient?: string;
  /** The gateway acting on its own (`sweeper`), or the admin API a call came through (`admin-api`). */
  readonly system?: string;
  /**
   * A signed file URL followed (no token): the key that signed it, its stored policy, and its name
   * (`url`), which the record of its issue carries in `what.urls` under the caller it went to.
   */
  readonly signedUrl?: { readonly keyId: string; readonly policy?: string; readonly url: string };
}

export interface AuditWhat {
  readonly interaction?: InteractionKind;
  readonly resourceType?: string;
  readonly id?: string;
  readonly operation?: string;
  /** A request refused before it could be classified: its path (never its query). */
  readonly path?: string;
  /** Admin API and sweeper actions: `link`, `quarantine`, `release`, `delete`, `unlink`, `expire`. */
  readonly change?: string;
  readonly blobs: readonly BlobEvent[];
  /** Blob events past the ones listed. */
  readonly blobsOmitted?: number;
  /** Attachments whose data the FHIR server held inline, sent in the answer: how many, decoded bytes. */
  readonly inline?: { readonly count: number; readonly bytes: number };
  /** Signed file URLs handed out by this request (`$file-url`, links in an answer). */
  readonly urls?: readonly UrlGrant[];
  /** Grants past the ones listed. */
  readonly urlsOmitted?: number;
}

const ACTIONS: Readonly<Record<InteractionKind, AuditAction>> = {
  read: 'read',
  vread: 'read',
  search: 'read',
  history: 'read',
  capabilities: 'read',
  create: 'create',
  update: 'update',
  patch: 'update',
  delete: 'delete',
  operation: 'execute',
  batch: 'execute',
  transaction: 'execute',
};

export function actionOf(i: Interaction | undefined, method: string | undefined): AuditAction {
  if (i) return ACTIONS[i.kind];
  return method === 'GET' || method === 'HEAD' ? 'read' : 'execute';
}

/** A JWT's identity claims, as far as they are strings (client_id, else azp, else cid: Okta and Keycloak name it so). */
export function whoOf(claims: Readonly<Record<string, unknown>> | undefined, patient: string | undefined): AuditWho {
  const str = (k: string) => (typeof claims?.[k] === 'string' ? claims[k].slice(0, 256) : undefined);
  const sub = str('sub');
  const clientId = str('client_id') ?? str('azp') ?? str('cid');
  const issuer = str('iss');
  return { ...(sub ? { sub } : {}), ...(clientId ? { clientId } : {}), ...(issuer ? { issuer } : {}), ...(patient ? { patient } : {}) };
}

/** The blob events a request noted, for `what`. */
export function blobsOf(log: BlobEventLog | undefined): Pick<AuditWhat, 'blobs' | 'blobsOmitted' | 'inline' | 'urls' | 'urlsOmitted'> {
  return {
    blobs: log?.blobEvents ?? [],
    ...(log?.blobEventsOmitted ? { blobsOmitted: log.blobEventsOmitted } : {}),
    ...(log?.inlineServed ? { inline: { ...log.inlineServed } } : {}),
    ...(log?.urlGrants?.length ? { urls: log.urlGrants } : {}),
    ...(log?.urlGrantsOmitted ? { urlsOmitted: log.urlGrantsOmitted } : {}),
  };
}
