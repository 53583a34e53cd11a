import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { GatewayError } from '../errors/catalogue.js';
import type { PathStep } from '../fhir/attachment-path.js';
import type { JsonToken } from '../json/tokenizer.js';
import { JsonWalker, type Container, type Route, type WalkPolicy } from '../json/walker.js';
import { Base64Decoder } from '../lib/base64.js';

/** Root members a reader of one attachment needs: identity, version, access. */
const ROOT_KEEP = new Set(['resourceType', 'id', 'meta', 'securityContext', 'contentType']);
const MAX_KEPT_CHARS = 256 * 1024;
/** The tokenizer's pieces are small; decoding and writing in larger batches is far cheaper. */
const BATCH_CHARS = 64 * 1024;

export interface ReadAttachment {
  /** The resource's identity members (resourceType, id, meta, securityContext; contentType on Binary). */
  readonly resource: Record<string, unknown>;
  /** The attachment's members except `data` (the resource itself for Binary.data); undefined when the path names nothing. */
  readonly attachment: Record<string, unknown> | undefined;
  /** The decoded inline data, spooled to a private file the caller removes. */
  readonly spool: { readonly file: string; readonly size: number } | undefined;
}

/**
 * Where a container stands on the way to the attachment: how many path steps its value has
 * matched (`step`), and for an array, that it holds the items of step `step`.
 */
interface Way {
  readonly step: number;
  readonly array: boolean;
}

/**
 * Reads a FHIR JSON resource of any size as a stream and keeps only what serving one attachment
 * needs: its identity members, the attachment's small members, and its inline `data` decoded into
 * a spool file. Everything else is skipped unread, so a resource the upstream holds with hundreds
 * of megabytes inline is read in bounded memory. `steps` 'binary': the resource is its own
 * attachment (Binary.data).
 */
export async function readAttachment(body: Readable, steps: readonly PathStep[] | 'binary', dir: string): Promise<ReadAttachment> {
  const reader = new AttachmentReader(steps === 'binary' ? undefined : steps, join(dir, `fbg-inline-${randomUUID()}.bin`));
  try {
    for await (const chunk of body) await reader.walker.push(chunk as Buffer);
    await reader.walker.end();
    return await reader.finish();
  } catch (err) {
    await reader.abandon();
    throw err;
  }
}

class AttachmentReader implements WalkPolicy<Way> {
  readonly walker: JsonWalker<Way>;
  private readonly resource: Record<string, unknown> = {};
  private attachment: Record<string, unknown> | undefined;
  private spool: { decoder: Base64Decoder; out: WriteStream; pieces: string[]; chars: number; size: number } | undefined;

  /** `steps` undefined: the target is the resource itself (Binary.data). */
  constructor(
    private readonly steps: readonly PathStep[] | undefined,
    private readonly file: string,
  ) {
    this.walker = new JsonWalker(this, {
      maxDepth: 128,
      maxKey: 1024,
      hold: { maxChars: MAX_KEPT_CHARS, maxDepth: 32 },
      subject: "the upstream's resource",
      fail: (problem, cause) => new GatewayError('UPSTREAM_INVALID', problem, { cause }),
    });
  }

  open(c: Container<Way>): Way {
    const parent = c.parent?.state;
    if (!parent) return { step: 0, array: false };
    // The array of step `parent.step` (its items are that step's elements), or an element.
    const way = c.kind === 'array' && !parent.array ? { step: parent.step, array: true } : { step: parent.step + 1, array: false };
    if (c.kind === 'object' && way.step === this.steps?.length) this.attachment = {};
    return way;
  }

  /** Whether `c` is the attachment the path names. */
  private isTarget(c: Container<Way>): boolean {
    return c.kind === 'object' && (this.steps ? c.state.step === this.steps.length && !c.state.array : !c.parent);
  }

  route(parent: Container<Way> | undefined, key: string | undefined, first: JsonToken): Route {
    if (!parent) {
      if (first.name !== 'startObject') throw new GatewayError('UPSTREAM_INVALID', "the upstream's resource is not a JSON object");
      if (!this.steps) this.attachment = this.resource;
      return 'pass';
    }
    if (this.isTarget(parent) && key !== undefined) {
      if (key === 'data' && first.name === 'startString') return this.startData();
      return 'hold';
    }
    if (!parent.parent && key !== undefined && ROOT_KEEP.has(key)) return 'hold';
    return this.onTheWay(parent, key, first) ? 'pass' : 'skip';
  }

  /** Only containers that can hold the attachment are entered; everything else is skipped whole. */
  private onTheWay(parent: Container<Way>, key: string | undefined, first: JsonToken): boolean {
    const steps = this.steps;
    if (!steps || (first.name !== 'startObject' && first.name !== 'startArray')) return false;
    const way = parent.state;
    const step = steps[way.step];
    if (!step) return false;
    if (way.array) {
      // An item: the one the step's index names (the first when it names none), and an object.
      return parent.items - 1 === (step.index ?? 0) && first.name === 'startObject';
    }
    if (parent.kind !== 'object' || key !== step.name) return false;
    // A single element has no items: only an index of 0 (or none) names it, as FHIRPath's first match does.
    if (first.name === 'startObject') return (step.index ?? 0) === 0;
    return true;
  }

  held(parent: Container<Way> | undefined, key: string | undefined, value: unknown): void {
    if (!parent || key === undefined) return;
    const into = this.isTarget(parent) ? this.attachment! : this.resource;
    into[key] = value;
  }

  private startData(): Route {
    if (this.spool) throw new GatewayError('UPSTREAM_INVALID', 'the upstream answered with two data members in one attachment');
    this.spool = {
      decoder: new Base64Decoder(),
      out: createWriteStream(this.file, { flags: 'wx', mode: 0o600 }),
      pieces: [],
      chars: 0,
      size: 0,
    };
    return 'stream';
  }

  chunk(text: string): Promise<void> | undefined {
    const d = this.spool!;
    d.pieces.push(text);
    d.chars += text.length;
    return d.chars >= BATCH_CHARS ? this.flushData() : undefined;
  }

  async streamEnd(): Promise<void> {
    await this.flushData();
    this.spool!.decoder.end();
  }

  private async flushData(): Promise<void> {
    const d = this.spool!;
    if (!d.chars) return;
    const bytes = d.decoder.push(d.pieces.join(''));
    d.pieces = [];
    d.chars = 0;
    d.size += bytes.length;
    if (bytes.length && !d.out.write(bytes)) await once(d.out, 'drain');
  }

  async finish(): Promise<ReadAttachment> {
    if (!this.spool) return { resource: this.resource, attachment: this.attachment, spool: undefined };
    const { out, size } = this.spool;
    out.end();
    await once(out, 'close');
    return { resource: this.resource, attachment: this.attachment, spool: { file: this.file, size } };
  }

  async abandon(): Promise<void> {
    if (!this.spool) return;
    const { out } = this.spool;
    out.destroy();
    // The file may still be being opened: unlink only once the stream has let go of it.
    if (!out.closed) await once(out, 'close');
    await unlink(this.file).catch(() => undefined);
  }
}
