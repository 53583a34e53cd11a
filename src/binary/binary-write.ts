import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { allowed, essence } from '../content/media-type.js';
import { GatewayError } from '../errors/catalogue.js';
import { blobExtension } from '../fhir/blob-reference.js';
import { RELATIVE_REFERENCE } from '../fhir/resource-types.js';
import type { Exchange } from '../security/exchange.js';
import { securityContextOf } from '../security/security-context.js';
import { writtenResource } from './blob-lifecycle.js';
import type { PlaneDeps } from './deps.js';
import { ownContent } from './own-content.js';
import type { FhirResource } from './upstream-resources.js';

const FHIR_BODY = /^application\/(fhir\+json|json\+fhir|fhir\+xml|xml\+fhir)$/;

/**
 * Binary create, update and delete (FHIR R4 Binary over REST): raw content goes to the store
 * through the content check and the upstream gets a Binary that refers to it; a FHIR JSON Binary
 * body goes through the rewrite engine the same way. Replacing or deleting needs the right to
 * read what governs the Binary being replaced.
 */
export class BinaryWrites {
  constructor(private readonly d: PlaneDeps) {}

  /** POST /Binary, PUT /Binary/{id}: the content itself, or a FHIR JSON Binary. */
  async write(x: Exchange): Promise<void> {
    const { req, interaction: i } = x;
    // Content must reach the store through the checks; passing a conditional write on would
    // hand the upstream unchecked bytes.
    if (i.conditional) throw new GatewayError('METHOD_NOT_ALLOWED', 'conditional create/update of Binary is not supported');
    const declared = essence(req.headers['content-type']);
    if (!declared) throw new GatewayError('UNSUPPORTED_MEDIA', 'Content-Type is required for Binary content');
    if (FHIR_BODY.test(declared)) return this.writeResource(x, declared);
    if (!allowed(declared, x.settings.policy.allowedTypes('Binary')))
      throw new GatewayError('UNSUPPORTED_MEDIA', `${declared} is not allowed for Binary`);
    const securityContext = req.headers['x-security-context'];
    if (securityContext !== undefined && (typeof securityContext !== 'string' || !RELATIVE_REFERENCE.test(securityContext))) {
      throw new GatewayError('BAD_REQUEST', 'X-Security-Context must be a relative reference such as Patient/123');
    }
    const version = await this.guardReplace(x);
    if (securityContext) await this.d.guard.require(x, securityContext);
    // Only now may the client send the body (Expect: 100-continue).
    x.continue100();

    const info = await this.d.blobs.upload(x, declared);
    if (!info) return;
    const binary = {
      resourceType: 'Binary',
      ...(i.id ? { id: i.id } : {}),
      contentType: declared,
      ...(securityContext ? { securityContext: { reference: securityContext } } : {}),
      _data: { extension: [blobExtension({ id: info.id, sha256: info.sha256 })] },
    };
    const body = Buffer.from(JSON.stringify(binary));
    const up = await this.d.blobs.commit(x, {
      method: i.method,
      path: `/${i.path}`,
      headers: ifMatch(x, version),
      blobs: [{ id: info.id, contentType: declared }],
      body,
      length: body.length,
      owner: (r) => writtenResource('Binary', i.id, r),
    });
    this.d.resources.relay(x, up, noEcho(x));
  }

  /** DELETE /Binary/{id}: deleting is replacing with nothing, and needs the same right. */
  async delete(x: Exchange): Promise<void> {
    await this.guardReplace(x);
    x.continue100();
    this.d.forwarder.forward(x);
  }

  /** A patch could set `data` past every check (JSON Patch, FHIRPath Patch): refused, not guessed at. */
  patch(): never {
    throw new GatewayError('METHOD_NOT_ALLOWED', 'PATCH of Binary is not supported: send the whole Binary (PUT)');
  }

  /**
   * A FHIR Binary body (`application/fhir+json`): its `data` goes through the rewrite engine into
   * the store, checked like raw content, and the upstream gets the Binary with a reference instead.
   */
  private async writeResource(x: Exchange, declared: string): Promise<void> {
    const { interaction: i } = x;
    // Streaming XML is not built; a body we cannot rewrite must not reach the upstream with its data.
    if (declared.includes('xml')) {
      throw new GatewayError(
        'UNSUPPORTED_MEDIA',
        'FHIR XML Binary bodies are not accepted: send application/fhir+json, or the content itself with its own Content-Type',
      );
    }
    const version = await this.guardReplace(x);
    x.continue100();
    // Binary.data is always externalized, as raw uploads are; anything nested (extensions) only
    // above the threshold, so one body cannot fan out into many blobs.
    const own = i.kind === 'update' && i.id !== undefined ? ownContent(this.d, x, 'Binary', i.id) : undefined;
    const spooled = await this.d.blobs.externalize(x, x.req, { binaryMinBytes: 0, ...(own ? { own } : {}) });
    if (!spooled) return;
    const blobs = spooled.blobs.map((b) => ({ id: b.info.id, contentType: b.contentType }));
    try {
      try {
        if (spooled.rootType !== 'Binary') {
          throw new GatewayError(
            'BAD_REQUEST',
            `the body of a Binary ${i.kind} must be a Binary, not ${spooled.rootType ?? 'something without resourceType'}`,
          );
        }
        const sc = securityContextOf({ securityContext: spooled.rootSecurityContext }, 'write');
        if (sc !== undefined) await this.d.guard.require(x, sc);
      } catch (err) {
        await this.d.blobs.discard(
          blobs.map((b) => b.id),
          x.ctx,
        );
        throw err;
      }
      const up = await this.d.blobs.commit(x, {
        method: i.method,
        path: `/${i.path}`,
        headers: ifMatch(x, version),
        blobs,
        body: createReadStream(spooled.file),
        length: spooled.size,
        owner: (r) => writtenResource('Binary', i.id, r),
      });
      this.d.resources.relay(x, up, noEcho(x));
    } finally {
      await unlink(spooled.file).catch(() => undefined);
    }
  }

  /**
   * Replacing or deleting a Binary needs the same right as reading it: the securityContext of the
   * version being replaced is checked too, or a caller could take over content governed by another
   * patient. A deleted Binary is judged by its earlier versions (delete, then re-create under the
   * same id, must not launder it). Resolves with the current version, for If-Match.
   */
  private async guardReplace(x: Exchange): Promise<string | undefined> {
    const i = x.interaction;
    if (i.kind !== 'update' && i.kind !== 'delete') return undefined;
    if (i.id === undefined) throw new GatewayError('METHOD_NOT_ALLOWED', `conditional ${i.kind} of Binary is not supported`);
    if (!x.smartScopes) return undefined;
    const got = await this.d.resources.resource(x, `/Binary/${i.id}`);
    if (!('relay' in got)) {
      const sc = securityContextOf(got.resource, 'write');
      if (sc !== undefined) await this.d.guard.require(x, sc);
      const v = got.resource.meta?.versionId;
      return typeof v === 'string' ? v : undefined;
    }
    const status = got.relay.statusCode;
    got.relay.resume();
    if (status === 404) return undefined;
    // Gone (or anything else): every earlier version's context must be readable by the caller.
    const history = await this.d.resources.resource(x, `/Binary/${i.id}/_history`);
    if ('relay' in history) {
      history.relay.resume();
      throw new GatewayError('INSUFFICIENT_SCOPE', 'the earlier versions of this Binary could not be checked');
    }
    const entries = (history.resource['entry'] ?? []) as { resource?: FhirResource }[];
    for (const e of Array.isArray(entries) ? entries : []) {
      const sc = e.resource ? securityContextOf(e.resource, 'write') : undefined;
      if (sc !== undefined) await this.d.guard.require(x, sc);
    }
    return undefined;
  }
}

/**
 * The version the securityContext check read: the update must replace exactly that one, or a
 * version written in between (with another context) would be overwritten unchecked. A client's
 * own If-Match is kept (the upstream then enforces it).
 */
function ifMatch(x: Exchange, version: string | undefined): Record<string, string> {
  return version !== undefined && x.req.headers['if-match'] === undefined ? { 'if-match': `W/"${version}"` } : {};
}

/** The answer to a Binary write does not echo the bytes the client just sent: a link stands for them. */
function noEcho(x: Exchange): Exchange['rewrite'] {
  return { ...x.rewrite, inflate: false };
}
