import { GatewayError } from '../errors/catalogue.js';
import { isResourceRoot, listOfResource } from '../fhir/json-positions.js';
import { NOT_ATTACHMENT } from '../fhir/attachment-kinds.js';
import { BLOB_EXTENSION_URL, findBlobRef, REMOVED_URL } from '../fhir/blob-reference.js';
import type { JsonToken } from '../json/tokenizer.js';
import { JsonWalker, pathBelow, type Container, type Route, type WalkPolicy } from '../json/walker.js';
import { JsonWriter } from '../json/writer.js';
import { EntryGates, type Gates } from './entry-gate.js';
import { NestedGates } from './nested-gates.js';
import type { InflateOptions } from './inflate-options.js';
import { attachmentEnd, newAtt, type Att, type InflateReport, type Owner } from './inflate-attachment.js';
import { InflateBudget } from './inflate-budget.js';
import { InflateOutput } from './inflate-output.js';

export { type InflateReport } from './inflate-attachment.js';
export { CONTENT_URL_EXTENSION } from '../fhir/content-link.js';
export type { InflateOptions } from './inflate-options.js';

/** Bundle types an operation assembles from resources stored one by one (each the owner of its attachments). */
const ASSEMBLED_BUNDLE_TYPES = new Set(['searchset', 'history', 'batch-response', 'transaction-response']);
/** What a batch answer's entry may hold that the server assembled rather than stored. */
const NESTED_LISTINGS = new Set(['searchset', 'history']);
/** JSON held while an attachment waits for its resource's id (servers may write `id` last). */
const MAX_PENDING_CHARS = 8 * 1024 * 1024;

interface State {
  /** A resource: the document, a contained one, an entry's, a parameter's, an outcome. */
  readonly root: boolean;
  readonly owner: Owner | undefined;
  /** Set on an owner's own container, with the container it is. */
  readonly owns: (Owner & { readonly at: Container<State> }) | undefined;
  /**
   * An entry's (or parameter's) resource in a Bundle whose root owns its attachments: what it says
   * it is. Content written for it (a `$document` answer assembles stored resources into a fresh
   * Bundle) is linked through it — never inlined: a link is checked again when followed.
   */
  readonly claim: (Owner & { readonly at: Container<State> }) | undefined;
  readonly claims: (Owner & { readonly at: Container<State> }) | undefined;
  resourceType: string | undefined;
  bundleType: string | undefined;
  hasUrl: boolean;
  /** Attachment.size as the upstream holds it: lets a blob that cannot fit be linked without asking the store. */
  declaredSize: number | undefined;
  att: Att | undefined;
}

/**
 * The rewrite engine's read direction: re-writes a FHIR JSON response as it streams so that
 *
 * - an attachment (or Binary) whose content the gateway stored gets it back as `data`, streamed
 *   from the store and base64-encoded on the fly, while the response's decoded total stays within
 *   `maxBytes` (in document order); past that, or with inflation off, it gets a `url` to
 *   `$binary-access-read` through the gateway (for Binary, a `content-url` extension on `_data`);
 * - inline data the upstream holds is sent only within the same budget, else replaced by a link
 *   the same way: a client never receives more attachment bytes than the policy says;
 * - our stable reference never leaves (a client would otherwise send it back and be refused);
 * - `fullUrl`, `Bundle.link.url` and `response.location` move from the upstream's base to ours.
 *
 * A blob is served only to the resource it was written for (its owner), so a reference planted in
 * the upstream around the gateway reads nothing. Servers may write a resource's `id` after its
 * content, so output waits (bounded) until the owner's id is known. Nothing else is held: JSON
 * streams through, inline values over the in-memory bound go to a private file.
 */
export class Inflater implements WalkPolicy<State> {
  private readonly out = new JsonWriter();
  private readonly output = new InflateOutput(this.out, MAX_PENDING_CHARS);
  private readonly walker: JsonWalker<State>;
  readonly report: InflateReport = { inflated: 0, linked: 0, bytes: 0 };
  private readonly budget: InflateBudget;
  private readonly gates: Gates | undefined;

  constructor(private readonly opts: InflateOptions) {
    this.budget = new InflateBudget(opts, this.out, this.output, this.report);
    this.gates = opts.guard
      ? new EntryGates(opts.guard, this.out, this.output)
      : opts.entryGuards
        ? new NestedGates(opts.entryGuards, this.out, this.output)
        : undefined;
    this.walker = new JsonWalker<State>(this, {
      maxDepth: 128,
      maxKey: 1024,
      hold: { maxChars: 64 * 1024, maxDepth: 16 },
      subject: 'the response',
      writer: this.out,
      fail: (problem, cause) => new GatewayError('UPSTREAM_INVALID', problem, { cause }),
    });
  }

  /** The rewritten response, piece by piece, for stream.pipeline (which supplies backpressure). */
  async *run(source: AsyncIterable<Buffer | string>): AsyncGenerator<string> {
    // Whether everything so far was whitespace (an empty answer is passed on empty, not refused).
    let blank = true;
    try {
      for await (const chunk of source) {
        if (!this.walker.started && blank) blank = !/\S/.test(typeof chunk === 'string' ? chunk : chunk.toString('latin1'));
        const pending = this.walker.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
        if (pending) await pending;
        this.output.check();
        yield* this.output.flush(false);
      }
      if (!this.walker.started && blank) return;
      const pending = this.walker.end();
      if (pending) await pending;
      yield* this.output.flush(true);
    } finally {
      await this.budget.discard();
      await this.output.discard();
    }
  }

  open(c: Container<State>): State {
    this.gates?.open(c);
    const parent = c.parent?.state;
    const owns = this.ownsAttachments(c) ? { type: undefined, id: undefined, ended: false, at: c } : undefined;
    const claims =
      !owns && c.kind === 'object' && listOfResource(c) !== undefined ? { type: undefined, id: undefined, ended: false, at: c } : undefined;
    return {
      root: c.kind === 'object' && isResourceRoot(c),
      owner: owns ?? parent?.owner,
      owns,
      claim: claims ?? parent?.claim,
      claims,
      resourceType: undefined,
      bundleType: undefined,
      hasUrl: false,
      declaredSize: undefined,
      att: undefined,
    };
  }

  /** Who a blob was written for (InflateOptions.owners): the document's resource, or each entry's. */
  private ownsAttachments(c: Container<State>): boolean {
    if (!c.parent) return true;
    const mode = this.opts.owners;
    const list = mode === 'root' || c.kind !== 'object' ? undefined : listOfResource(c);
    if (list === undefined) return mode === 'entries' && c.kind === 'object' && this.inNestedListing(c);
    if (mode === 'entries') return list === 'entry';
    const top = c.parent.parent!.parent!.state;
    if (top.resourceType === 'Parameters') return list === 'parameter';
    // A type not read yet counts as stored: the root, whose id the upstream vouches for, owns.
    return top.resourceType === 'Bundle' && list === 'entry' && ASSEMBLED_BUNDLE_TYPES.has(top.bundleType ?? '');
  }

  /**
   * An entry's resource in a search or history Bundle that is itself an entry's resource (a batch
   * answer's GET search): that Bundle was assembled by the server, its entries are the owners, as
   * a top-level listing's are. Known only when the nested Bundle's `type` came before its entries
   * (otherwise it counts as stored, and owns: nothing is served it was not written for).
   */
  private inNestedListing(c: Container<State>): boolean {
    const list = c.parent?.parent;
    const bundle = list?.parent;
    if (c.key !== 'resource' || c.parent?.kind !== 'object' || list?.kind !== 'array' || list.key !== 'entry' || !bundle) return false;
    if (listOfResource(bundle) !== 'entry') return false;
    return bundle.state.resourceType === 'Bundle' && NESTED_LISTINGS.has(bundle.state.bundleType ?? '');
  }

  route(parent: Container<State> | undefined, key: string | undefined, first: JsonToken): Route {
    const gates = this.gates;
    if (gates && parent) {
      gates.settle();
      const shaped = gates.route(parent, key, first);
      if (shaped) return shaped;
      // In an entry being guarded no key repeats: a last-wins reader would see what the guard did not.
      if (gates.inEntry && key !== undefined && !(parent.state.root && (key === 'resourceType' || key === 'id')))
        this.walker.once(parent, key);
    }
    if (!parent || key === undefined || parent.kind !== 'object') return 'pass';
    const frame = parent.state;
    if (key === 'resource' && parent.depth === 3 && parent.name === 'entry' && this.opts.withheldEntries?.has(parent.index)) return 'skip';
    if (key === 'data' && this.carriesContent(parent, first)) {
      // Content of a resource the caller may not read is not sent inline either: the link checks.
      if (this.gates?.dropping || (this.opts.mayRead && !this.opts.mayRead(frame.owner?.type))) {
        (frame.att ??= newAtt()).overflow = true;
        return 'skip';
      }
      if (first.name === 'startString') {
        this.budget.startInline(parent);
        return 'stream';
      }
      // Attachment content that is not a string is not FHIR; it is not sent (nor counted) either.
      (frame.att ??= newAtt()).overflow = true;
      this.opts.warn?.('attachment data that is not a string was left out');
      return 'skip';
    }
    if (key === 'url') frame.hasUrl = true;
    return this.holds(parent, key) ? 'hold' : 'pass';
  }

  /**
   * Attachment content: Binary.data at a resource's root (or a string `data` at a root whose type
   * is not known yet: counted rather than let through), or `data` of any element but SampledData
   * and Signature. At a root that is not a Binary, a `data` that is not a string is not content:
   * a `$graphql` answer is `{"data": {...}}`, and an OperationOutcome, a Parameters or an
   * extension-laden resource may carry such a member. It is walked like any JSON, so attachments
   * inside it are still found and held to the budget (attack graphql-answer-emptied). Binary.data
   * that is not a string stays malformed content: left out.
   */
  private carriesContent(c: Container<State>, first: JsonToken): boolean {
    const f = c.state;
    if (!f.root) return !NOT_ATTACHMENT.has(c.name ?? '');
    return f.resourceType === 'Binary' || (f.resourceType === undefined && first.name === 'startString');
  }

  /** Members kept whole (they are small) because they are read or rewritten; identity members decide ownership, so a second one is refused. */
  private holds(c: Container<State>, key: string): boolean {
    switch (key) {
      case '_data':
      case 'fullUrl':
      // Every `url`: one equal to our extension URL is replaced wherever the gateway did not put it.
      case 'url':
        return true;
      case 'resourceType':
      case 'id':
        return c.state.root && this.walker.once(c, key);
      // Where a patient's compartment is decided: only while an entry waits for it.
      case 'reference':
        return this.gates?.deciding === true;
      case 'type': {
        // The document's, and a top-level entry's Bundle's (a batch answer's search: inNestedListing).
        // In a guarded entry the gate has already made every key single.
        const nested = c.depth !== 1 && c.state.root && listOfResource(c) === 'entry';
        if (c.depth !== 1 && !nested) return false;
        return nested && this.gates?.inEntry === true ? true : this.walker.once(c, key);
      }
      case 'size':
        return !c.state.root;
      case 'location':
        return c.name === 'response';
      default:
        return false;
    }
  }

  /** A held member is complete: record what it says, and write it (rewritten) in its place. */
  held(parent: Container<State> | undefined, key: string | undefined, v: unknown): Promise<void> | undefined {
    if (!parent || key === undefined) return undefined;
    const frame = parent.state;
    this.gates?.held(parent, key, v);
    switch (key) {
      case '_data':
        return this.dataElement(parent, v);
      case 'resourceType':
        if (typeof v === 'string') {
          frame.resourceType = v;
          if (frame.owns) frame.owns.type = v;
          if (frame.claims) frame.claims.type = v;
        }
        break;
      case 'id':
        if (frame.owns && typeof v === 'string') frame.owns.id = v;
        if (frame.claims && typeof v === 'string') frame.claims.id = v;
        break;
      case 'type':
        if (typeof v === 'string') frame.bundleType = v;
        break;
      case 'size':
        if (typeof v === 'number') frame.declaredSize = v;
        break;
      case 'reference':
        break;
      case 'url':
        if (v === BLOB_EXTENSION_URL) {
          this.opts.warn?.('a blob reference the gateway did not write was removed');
          v = REMOVED_URL;
        } else if (typeof v === 'string' && parent.name === 'link') v = this.opts.publicUrl(v);
        break;
      default:
        // fullUrl, Bundle.link.url, response.location
        if (typeof v === 'string') v = this.opts.publicUrl(v);
    }
    this.out.pair(parent, key, v);
    return undefined;
  }

  /** `_data`: without our reference it stays as it was, in place; with it, the object's end decides. */
  private async dataElement(c: Container<State>, v: unknown): Promise<void> {
    const frame = c.state;
    const element = v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
    const ref = element ? findBlobRef(element['extension']) : undefined;
    const extensions = element?.['extension'];
    const ours = Array.isArray(extensions) && extensions.some((e) => (e as { url?: unknown } | null)?.url === BLOB_EXTENSION_URL);
    const binaryRoot = frame.root && frame.resourceType === 'Binary';
    if (!element || (!ours && !binaryRoot)) {
      this.out.pair(c, '_data', v);
      return;
    }
    // A Signature's or SampledData's `data` is never content: a reference there was not written
    // by the gateway, and is neither served nor linked (attack relink-placement-unchecked).
    if (ours && !frame.root && NOT_ATTACHMENT.has(c.name ?? '')) {
      this.opts.warn?.('a blob reference outside an attachment was removed');
      const rest = withoutReference(element);
      if (Object.keys(rest).length) this.out.pair(c, '_data', rest);
      return;
    }
    if (ours && !ref) this.opts.warn?.('a malformed blob reference was removed');
    const att = (frame.att ??= newAtt());
    att.rest = withoutReference(element);
    if (!ref || att.ref) return;
    if (this.gates?.dropping) return;
    const readable = this.opts.mayRead === undefined || this.opts.mayRead(frame.owner?.type);
    att.ref = { ref, inflate: readable ? await this.budget.stored(ref, frame.declaredSize) : undefined };
  }

  chunk(piece: string): Promise<void> {
    return this.budget.chunk(piece);
  }

  streamEnd(): Promise<void> {
    return this.budget.endInline();
  }

  close(c: Container<State>): void {
    this.gates?.settle();
    this.gates?.close(c);
    const frame = c.state;
    if (frame.owns) frame.owns.ended = true;
    if (frame.claims) frame.claims.ended = true;
    const att = frame.att;
    if (!att || !(att.ref || att.overflow || att.rest)) return;
    const owner = frame.owner!;
    const ownerAt = (owner as Owner & { at?: Container<State> }).at!;
    this.output.enqueue(
      attachmentEnd({
        owner,
        att,
        binaryRoot: frame.root && frame.resourceType === 'Binary',
        isOwner: frame.owns !== undefined,
        path: pathBelow(ownerAt, c),
        ...(frame.claim ? { claim: { owner: frame.claim, path: pathBelow(frame.claim.at, c), isSelf: frame.claims !== undefined } } : {}),
        hasUrl: frame.hasUrl,
        comma: c.written > 0,
        store: this.opts.store,
        report: this.report,
        link: (o, p) => this.opts.link(o, p),
        ...(this.opts.signedLink
          ? { signedLink: (o: string, b: { readonly id: string; readonly sha256: string }) => this.opts.signedLink?.(o, b) }
          : {}),
        ...(this.opts.warn ? { warn: (w: string, b?: string) => this.opts.warn?.(w, b) } : {}),
        ...(this.opts.corrupt ? { corrupt: (b: string, c: string) => this.opts.corrupt?.(b, c) } : {}),
        ...(this.opts.served ? { served: (b: string, o: string, n: number) => this.opts.served?.(b, o, n) } : {}),
      }),
    );
  }
}

/** `_data` without our reference extension (and without an emptied extension list). */
function withoutReference(element: Record<string, unknown>): Record<string, unknown> {
  const { extension, ...rest } = element;
  const kept = Array.isArray(extension) ? extension.filter((e) => (e as { url?: unknown } | null)?.url !== BLOB_EXTENSION_URL) : [];
  return kept.length ? { ...rest, extension: kept } : rest;
}
