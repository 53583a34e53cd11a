import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { PathStep } from '../binary/attachment-path.js';
import { GatewayError } from '../errors.js';
import { Base64Decoder } from './base64-decode.js';
import { JsonTokenizer, type JsonToken } from './json-tokens.js';
import { ValueBuilder } from './value-builder.js';

/** Root members a reader of one attachment needs: identity, version, access. */
const ROOT_KEEP = new Set(['resourceType', 'id', 'meta', 'securityContext', 'contentType']);
const MAX_KEPT_CHARS = 256 * 1024;
const BATCH_CHARS = 64 * 1024;

export interface ExtractedAttachment {
  /** The resource's identity members (resourceType, id, meta, securityContext; contentType on Binary). */
  readonly resource: Record<string, unknown>;
  /** The attachment's members except `data` (the resource itself for Binary.data); undefined when the path names nothing. */
  readonly attachment: Record<string, unknown> | undefined;
  /** The decoded inline data, spooled to a private file the caller removes. */
  readonly spool: { readonly file: string; readonly size: number } | undefined;
}

type Segment = string | number;

/**
 * Reads a FHIR JSON resource of any size as a stream and keeps only what serving one attachment
 * needs: its identity members, the attachment's small members, and its inline `data` decoded into
 * a spool file. Everything else passes by unkept, so a resource the upstream holds with hundreds
 * of megabytes inline is read in bounded memory.
 */
export async function extractAttachment(body: Readable, steps: readonly PathStep[] | 'binary', dir: string): Promise<ExtractedAttachment> {
  const x = new Extraction(steps === 'binary' ? undefined : steps, join(dir, `fbg-inline-${randomUUID()}.bin`));
  const tokens = new JsonTokenizer();
  try {
    for await (const chunk of body) await x.feed(tokens.push(chunk as Buffer));
    await x.feed(tokens.end());
    return await x.finish();
  } catch (err) {
    await x.abandon();
    throw err;
  }
}

interface Frame {
  readonly kind: 'object' | 'array';
  readonly target: boolean;
  index: number;
}

class Extraction {
  private readonly path: Segment[] = [];
  private readonly frames: Frame[] = [];
  private key: string | undefined;
  private keyText: string | undefined;
  private readonly resource: Record<string, unknown> = {};
  private attachment: Record<string, unknown> | undefined;
  /** A kept value being built: where it goes, and its containers. */
  private kept: { readonly into: Record<string, unknown>; readonly key: string; readonly builder: ValueBuilder } | undefined;
  /** Depth of a container being skipped whole; a scalar being skipped. */
  private skipping = 0;
  private skipScalar = false;
  /** The spool of the target's data, and whether its string is still arriving. */
  private spool: { decoder: Base64Decoder; out: WriteStream; pieces: string[]; chars: number; size: number } | undefined;
  private inData = false;

  /** `steps` undefined: the target is the resource itself (Binary.data). */
  constructor(
    private readonly steps: readonly PathStep[] | undefined,
    private readonly file: string,
  ) {}

  async feed(tokens: readonly JsonToken[]): Promise<void> {
    for (const t of tokens) {
      const pending = this.token(t);
      if (pending) await pending;
    }
  }

  async finish(): Promise<ExtractedAttachment> {
    if (this.frames.length || this.inData) throw new GatewayError('UPSTREAM_UNAVAILABLE', 'the upstream answered with truncated JSON');
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

  private token(t: JsonToken): Promise<void> | undefined {
    if (this.kept) {
      this.keep(t);
      return undefined;
    }
    if (this.inData) return this.dataToken(t);
    if (this.skipScalar) {
      if (t.name === 'endString' || t.name === 'endNumber') {
        this.skipScalar = false;
        this.valueDone();
      }
      return undefined;
    }
    if (this.skipping) {
      if (t.name === 'startObject' || t.name === 'startArray') this.skipping++;
      else if (t.name === 'endObject' || t.name === 'endArray') this.skipping--;
      if (this.skipping === 0) this.valueDone();
      return undefined;
    }
    if (this.keyText !== undefined) {
      if (t.name === 'stringChunk') {
        this.keyText += t.value;
        if (this.keyText.length > 1024) throw new GatewayError('UPSTREAM_UNAVAILABLE', 'the upstream answered with an oversized JSON key');
      } else {
        this.key = this.keyText;
        this.keyText = undefined;
      }
      return undefined;
    }
    if (t.name === 'startKey') {
      this.keyText = '';
      return undefined;
    }
    if (t.name === 'endObject' || t.name === 'endArray') {
      this.frames.pop();
      this.path.pop();
      this.valueDone();
      return undefined;
    }
    return this.startValue(t);
  }

  /** A value begins where `key` (in an object) or the next index (in an array) says. */
  private startValue(t: JsonToken): Promise<void> | undefined {
    const parent = this.frames[this.frames.length - 1];
    const seg: Segment | undefined = parent ? (parent.kind === 'array' ? parent.index : this.key!) : undefined;
    const depth = this.frames.length;
    if (parent?.target && seg === 'data' && t.name === 'startString') {
      if (this.spool) throw new GatewayError('UPSTREAM_UNAVAILABLE', 'the upstream answered with two data members in one attachment');
      this.spool = {
        decoder: new Base64Decoder(),
        out: createWriteStream(this.file, { flags: 'wx', mode: 0o600 }),
        pieces: [],
        chars: 0,
        size: 0,
      };
      this.inData = true;
      return undefined;
    }
    const keepInto =
      parent?.target && typeof seg === 'string'
        ? this.attachment!
        : depth === 1 && typeof seg === 'string' && ROOT_KEEP.has(seg)
          ? this.resource
          : undefined;
    if (keepInto && typeof seg === 'string') {
      const key = seg;
      this.kept = {
        into: keepInto,
        key,
        builder: new ValueBuilder({
          maxCost: MAX_KEPT_CHARS,
          maxDepth: 32,
          tooLarge: (why) => new GatewayError('UPSTREAM_UNAVAILABLE', `the upstream's "${key}" is ${why} to serve from`),
        }),
      };
      this.keep(t);
      return undefined;
    }
    if (t.name === 'startObject' || t.name === 'startArray') {
      if (seg !== undefined) this.path.push(seg);
      const path = seg === undefined ? [] : this.path;
      // Only containers on the way to the target are followed; anything else is skipped whole.
      if (seg !== undefined && !this.onTheWay(path)) {
        this.path.pop();
        this.skipping = 1;
        return undefined;
      }
      const target = t.name === 'startObject' && this.isTarget(path);
      // Binary.data: the resource is its own attachment.
      if (target) this.attachment = seg === undefined ? this.resource : {};
      this.frames.push({ kind: t.name === 'startObject' ? 'object' : 'array', target, index: 0 });
      return undefined;
    }
    // A scalar nobody needs.
    if (t.name === 'startString' || t.name === 'startNumber') this.skipScalar = true;
    else this.valueDone();
    return undefined;
  }

  /** The container at `path` may contain the target (its segments agree with the steps so far). */
  private onTheWay(path: readonly Segment[]): boolean {
    return this.match(path) !== undefined;
  }

  private isTarget(path: readonly Segment[]): boolean {
    if (!this.steps) return path.length === 0;
    return this.match(path) === this.steps.length;
  }

  /** How many steps `path` has matched, or undefined when it has left the steps' way. */
  private match(path: readonly Segment[]): number | undefined {
    if (!this.steps) return undefined;
    let s = 0;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i];
      const step = this.steps[s];
      if (!step || seg !== step.name) return undefined;
      const next = path[i + 1];
      if (typeof next === 'number') {
        if (next !== (step.index ?? 0)) return undefined;
        i++;
      } else if (step.index !== undefined && step.index !== 0 && i + 1 < path.length) return undefined;
      s++;
    }
    return s;
  }

  private valueDone(): void {
    const parent = this.frames[this.frames.length - 1];
    if (parent?.kind === 'array') parent.index++;
  }

  private async dataToken(t: JsonToken): Promise<void> {
    const d = this.spool!;
    if (t.name === 'stringChunk') {
      d.pieces.push(t.value);
      d.chars += t.value.length;
      if (d.chars >= BATCH_CHARS) await this.flushData();
      return;
    }
    // endString: the value is complete; the spool file is closed in finish().
    await this.flushData();
    d.decoder.end();
    this.inData = false;
    this.valueDone();
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

  /** Builds a kept member's value in memory, bounded. */
  private keep(t: JsonToken): void {
    const k = this.kept!;
    if (!k.builder.push(t)) return;
    k.into[k.key] = k.builder.value;
    this.kept = undefined;
    this.valueDone();
  }
}
