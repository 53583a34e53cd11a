import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Interaction } from '../fhir/interaction.js';
import { createAccessLogger } from '../logging/logger.js';
import type { Principal } from '../security/checks.js';
import type { RequestContext } from '../security/client.js';

/** What the access line says about one request, filled in as the flow learns it. */
export interface AccessRecord {
  readonly id: string;
  ctx: RequestContext | undefined;
  interaction: Interaction | undefined;
  /** The catalogue code when the gateway refused the request. */
  code: string | undefined;
  /** Who the request was authorized as (the audit trail's `who`). */
  principal?: Principal;
}

const kRecord = Symbol('fhir-binary-gateway.access');
/** The status logged for an exchange that did not complete (nginx's "client closed request"). */
const ABORTED = 499;

function onClose(this: ServerResponse & { [kRecord]?: { log: AccessLog; rec: AccessRecord } }): void {
  const r = this[kRecord];
  if (r) r.log.line(r.rec, this);
}

/**
 * One access line per request, written when the exchange closes (not when it finishes: one cut
 * short, by the client or the upstream, gets its line too). Never headers, query strings (search
 * parameters are PHI) or bodies.
 */
export class AccessLog {
  private readonly log: Logger;

  constructor(parent: Logger) {
    this.log = createAccessLogger(parent);
  }

  set level(level: string) {
    this.log.level = level;
  }

  /** Starts the record of a request; its line is written when `res` closes. */
  start(id: string, res: ServerResponse): AccessRecord {
    const rec: AccessRecord = { id, ctx: undefined, interaction: undefined, code: undefined };
    if (this.log.isLevelEnabled('info')) {
      (res as ServerResponse & { [kRecord]?: unknown })[kRecord] = { log: this, rec };
      // 'close' fires once; on() spares the wrapper once() makes per request.
      res.on('close', onClose);
    }
    return rec;
  }

  line(rec: AccessRecord, res: ServerResponse): void {
    if (!this.log.isLevelEnabled('info')) return;
    const { ctx, interaction: i } = rec;
    // An exchange that ended before its answer was complete (the client left, or the answer was
    // cut) is 499, as nginx logs it, never the 200 Node defaults to; a head that went out is kept.
    const finished = res.writableFinished;
    this.log.info(
      {
        reqId: rec.id,
        client: ctx?.clientIp.toString(),
        method: i?.method,
        interaction: i?.kind,
        resourceType: i?.resourceType,
        operation: i?.operation,
        status: finished ? res.statusCode : ABORTED,
        ...(rec.code ? { code: rec.code } : {}),
        ...(finished ? {} : { aborted: true, ...(res.headersSent ? { statusSent: res.statusCode } : {}) }),
        ms: ctx ? Math.round((performance.now() - ctx.startedAt) * 10) / 10 : undefined,
      },
      'request',
    );
  }
}
