import type { IncomingMessage, ServerResponse } from 'node:http';
import { actionOf, blobsOf, whoOf, type AuditRecord } from '../audit/record.js';
import type { AuditTrail } from '../audit/trail.js';
import { uploadPurpose } from '../binary/file-metadata.js';
import type { Interaction } from '../fhir/interaction.js';
import type { LiveSettings } from '../security/settings.js';
import { outcomeOf, type AccessRecord } from './access-log.js';
import { onExchangeEnd, type EndListener } from '../lib/exchange-end.js';
import { refusalCode, refusalStatus } from '../lib/respond.js';

/**
 * Which exchanges become audit records, and what they say: every request that touched stored
 * content (a blob stored, linked, deleted, served raw or inflated), and every request for a
 * binary-bearing resource type (the types `content.allowedTypes` names: Binary, DocumentReference,
 * Media by default), a `$binary-access-*` or `$file-url` operation, or the files GraphQL API —
 * served, refused, failed or cut short.
 * Written when the exchange closes, like the access line.
 */
export class ExchangeAudit {
  private types: { readonly of: unknown; readonly set: ReadonlySet<string> } | undefined;
  /** One function for every exchange's end (no closure per request). */
  private readonly onEnd: EndListener<AccessRecord> = (res, rec) => this.exchange(rec, res.req, res);

  constructor(
    private readonly trail: AuditTrail,
    private readonly settings: LiveSettings,
  ) {}

  watch(rec: AccessRecord, res: ServerResponse): void {
    if (!this.trail.enabled) return;
    onExchangeEnd(res, this.onEnd, rec);
  }

  exchange(rec: AccessRecord, req: IncomingMessage, res: ServerResponse): void {
    const i = rec.interaction;
    const path = i ? undefined : this.unclassifiedBinaryPath(rec, req);
    if (
      !rec.ctx?.blobEvents?.length &&
      !rec.ctx?.inlineServed &&
      !rec.ctx?.urlGrants?.length &&
      !this.binaryBearing(i) &&
      path === undefined
    )
      return;
    const finished = res.writableFinished;
    const status = res.statusCode;
    const code = rec.code ?? refusalCode(res);
    // A GraphQL answer is a 200 that may carry refusals: judged by the error it carries.
    const outcome = outcomeOf(finished, refusalStatus(res) ?? status, code);
    // X-File-Metadata says what an upload is for: kept only where content was stored. On any other
    // request it would be a purpose of use the caller asserts and nothing checks.
    let purpose: string | undefined;
    try {
      purpose = rec.ctx?.blobEvents?.some((e) => e.action === 'write') ? uploadPurpose(req.headers) : undefined;
    } catch {
      purpose = undefined; // malformed: the request was refused for it, and says so in `code`
    }
    const record: AuditRecord = {
      audit: 1,
      time: new Date().toISOString(),
      reqId: rec.id,
      action: actionOf(i, req.method),
      outcome,
      status: finished ? status : 499,
      ...(code ? { code } : {}),
      who: rec.signedUrl
        ? { ...whoOf(rec.principal?.token?.claims, rec.principal?.patient), signedUrl: rec.signedUrl }
        : whoOf(rec.principal?.token?.claims, rec.principal?.patient),
      what: {
        ...(i ? { interaction: i.kind } : {}),
        ...(i?.resourceType ? { resourceType: i.resourceType } : {}),
        ...(i?.id ? { id: i.id } : {}),
        ...(i?.operation ? { operation: i.operation } : {}),
        ...(path !== undefined ? { path } : {}),
        ...blobsOf(rec.ctx),
      },
      ...(rec.ctx ? { where: { address: rec.ctx.clientIp.toString(), proto: rec.ctx.proto } } : {}),
      ...(purpose ? { purpose } : {}),
    };
    this.trail.record(record);
  }

  /**
   * A request refused before it was classified (a malformed path, a token in the query) whose path
   * names a binary-bearing type or a binary-access operation, however spelled: its path, without
   * the query, truncated. Other unclassified refusals are the access log's.
   */
  private unclassifiedBinaryPath(rec: AccessRecord, req: IncomingMessage): string | undefined {
    if (!rec.code) return undefined;
    const path = (req.url ?? '').split('?')[0];
    let decoded: string;
    try {
      decoded = decodeURIComponent(path).toLowerCase();
    } catch {
      decoded = path.toLowerCase();
    }
    const types = Object.keys(this.settings.current.config.content.allowedTypes).map((t) => t.toLowerCase());
    if (!decoded.includes('binary-access') && !types.some((t) => decoded.includes(t))) return undefined;
    return safePath(path);
  }

  private binaryBearing(i: Interaction | undefined): boolean {
    if (!i) return false;
    // The files GraphQL API is about stored content in every field: each request is on record.
    if (
      i.operation?.startsWith('binary-access') ||
      i.operation === 'file-url' ||
      i.operation === 'file' ||
      i.operation === 'gateway-graphql'
    )
      return true;
    if (!i.resourceType) return false;
    const allowed = this.settings.current.config.content.allowedTypes;
    if (this.types?.of !== allowed) this.types = { of: allowed, set: new Set(Object.keys(allowed)) };
    return this.types.set.has(i.resourceType);
  }
}

/**
 * A refused path as the audit trail may keep it: up to the first thing that could start
 * parameters however they were smuggled in — `?` or `;` (also percent-encoded), `#`, or a segment
 * with `=` — so no token or search value rides along; at most 128 characters.
 */
export function safePath(path: string): string {
  const cut = /[?;#]|%3[fFbB]|%23/.exec(path);
  let kept = cut ? path.slice(0, cut.index) : path;
  const eq = kept.search(/[^/]*(=|%3[dD])/);
  if (eq >= 0) kept = kept.slice(0, eq);
  return kept.slice(0, 128);
}
