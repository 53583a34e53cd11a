import { GatewayError } from '../errors/catalogue.js';
import type { JsonToken } from '../json/tokenizer.js';
import type { Container, Route } from '../json/walker.js';
import type { JsonWriter } from '../json/writer.js';
import type { InflateOutput, Slot } from './inflate-output.js';
import type { EntryGuard, Verdict } from './params.js';

/** Where an entry's output waits until the guard decides: renders the entry's start (`{` or `,{`) once admitted. */
class EntryGate implements Slot {
  verdict: Verdict;
  constructor(readonly prefix: string) {}
  ready(): boolean {
    return this.verdict !== undefined;
  }
  async *render(): AsyncGenerator<string> {
    if (this.verdict === 'admit') yield this.prefix;
  }
  async discard(): Promise<void> {}
}

type AnyContainer = Container<unknown>;

/**
 * The answer guard's side of the read rewrite (rewrite/inflate.ts): each entry of the root
 * Bundle's `entry` list waits behind a gate until the guard (RewriteParams.guard) admits or drops
 * it, from its resource's type, id and references as they stream. A dropped entry leaves nothing
 * (its comma included); the list then ends with one OperationOutcome entry saying how many were
 * withheld (never which). What waits is bounded by the output's pending limit.
 */
/** What an entry said before its resource's type was known: replayed once it is (servers may sort keys). */
type Fact = { readonly kind: 'id'; readonly value: string } | { readonly kind: 'reference'; readonly path: string; readonly value: string };
/** Facts kept per entry while its type is unknown; past it the entry is dropped (its type came too late to judge). */
const MAX_FACTS = 256;
/** The members of an R4 Bundle and of its links: in a guarded answer, nothing else is passed (it could carry resources). */
const BUNDLE_MEMBERS = new Set([
  'resourceType',
  'id',
  'meta',
  'implicitRules',
  'language',
  'identifier',
  'type',
  'timestamp',
  'total',
  'link',
  'entry',
  'signature',
]);
const LINK_MEMBERS = new Set(['id', 'extension', 'relation', 'url']);

interface Current {
  readonly item: AnyContainer;
  readonly gate: EntryGate;
  type: string | undefined;
  hasResource: boolean;
  facts: Fact[] | undefined;
  overflow: boolean;
}

/** What the Inflater asks of the answer guard's side (one Bundle's gates, or a batch answer's nested ones). */
export interface Gates {
  settle(): void;
  readonly deciding: boolean;
  readonly dropping: boolean;
  readonly inEntry: boolean;
  route(parent: AnyContainer, key: string | undefined, first: JsonToken): Route | undefined;
  open(c: AnyContainer): void;
  held(c: AnyContainer, key: string, v: unknown): void;
  close(c: AnyContainer): void;
}

export class EntryGates implements Gates {
  private current: Current | undefined;
  private rootType: string | undefined;
  private unmuteNext = false;
  private dropped = 0;
  /** The depth of the guarded Bundle: 1 for the answer itself, 4 for one nested in a batch answer's `entry[i].resource`. */
  private readonly bundle: number;

  /** `base`: the depth the guarded Bundle's container sits below (0: the answer is the Bundle). */
  constructor(
    private readonly guard: EntryGuard,
    private readonly out: JsonWriter,
    private readonly output: InflateOutput,
    base = 0,
  ) {
    this.bundle = base + 1;
  }

  /** At every route and close: a dropped entry's closing `}` has been written since, and goes too. */
  settle(): void {
    if (!this.unmuteNext) return;
    this.output.unmute();
    this.unmuteNext = false;
  }

  /** Whether the entry being read is still undecided: its references are worth reading. */
  get deciding(): boolean {
    return this.current !== undefined && this.current.gate.verdict === undefined;
  }

  /** Whether the entry being read was dropped: its attachments need no budget, store or output. */
  get dropping(): boolean {
    return this.current?.gate.verdict === 'drop';
  }

  /** Whether a member of the entry being read (not dropped): its keys may not repeat. */
  get inEntry(): boolean {
    return this.current !== undefined && this.current.gate.verdict !== 'drop';
  }

  /**
   * What the answer's shape allows, before the Inflater routes a value: entries are objects; members
   * that are not the Bundle's own, `response.outcome` and an OperationOutcome's `contained` are
   * left out (they could carry resources no gate sees). Undefined: the Inflater decides.
   */
  route(parent: AnyContainer, key: string | undefined, first: JsonToken): Route | undefined {
    const b = this.bundle;
    if (parent.depth === b + 1 && parent.key === 'entry' && parent.parent?.depth === b && first.name !== 'startObject') {
      throw new GatewayError('UPSTREAM_INVALID', 'a Bundle entry of the answer is not an object');
    }
    if (key === undefined) return undefined;
    if (parent.depth === b && !BUNDLE_MEMBERS.has(key)) return 'skip';
    if (parent.depth === b + 2 && parent.name === 'link' && parent.parent?.parent?.depth === b && !LINK_MEMBERS.has(key)) return 'skip';
    const cur = this.current;
    if (cur && key === 'outcome' && parent.key === 'response' && parent.parent === cur.item) return 'skip';
    if (
      key === 'contained' &&
      ((this.rootType === 'OperationOutcome' && parent.depth === b) || (cur?.type === 'OperationOutcome' && parent.parent === cur.item))
    ) {
      return 'skip';
    }
    return undefined;
  }

  /** An object opens (its `{`, and the comma before it, already written). */
  open(c: AnyContainer): void {
    const cur = this.current;
    if (cur && c.parent === cur.item && c.key === 'resource') cur.hasResource = true;
    if (c.kind !== 'object' || c.depth !== this.bundle + 2 || c.parent?.key !== 'entry' || c.parent.parent?.depth !== this.bundle) return;
    if (this.rootType !== 'Bundle')
      throw new GatewayError('UPSTREAM_INVALID', 'the answer is not a Bundle, or says so only after its entries');
    const text = this.out.take();
    const prefix = text.endsWith(',{') ? ',{' : '{';
    this.out.write(text.slice(0, text.length - prefix.length));
    const gate = new EntryGate(prefix);
    this.output.enqueue(gate);
    this.current = { item: c, gate, type: undefined, hasResource: false, facts: undefined, overflow: false };
  }

  /** A held member of `c` is complete. */
  held(c: AnyContainer, key: string, v: unknown): void {
    if (c.depth === this.bundle && key === 'resourceType') {
      this.rootType = typeof v === 'string' ? v : undefined;
      if (this.rootType !== 'Bundle' && this.rootType !== 'OperationOutcome')
        throw new GatewayError('UPSTREAM_INVALID', 'the answer is not a Bundle');
      return;
    }
    const cur = this.current;
    if (!cur || cur.gate.verdict !== undefined) return;
    const resource = c.parent === cur.item && c.key === 'resource';
    // A type that is not a string is no type: the entry is judged as having none (end: dropped).
    if (resource && key === 'resourceType') {
      if (typeof v !== 'string') return;
      cur.type = v;
      this.decide(this.guard.type(v));
      for (const f of cur.facts ?? []) this.judge(cur, f);
      cur.facts = undefined;
      return;
    }
    if (typeof v !== 'string') return;
    const fact: Fact | undefined =
      resource && key === 'id'
        ? { kind: 'id', value: v }
        : key === 'reference'
          ? { kind: 'reference', path: pathOf(c, cur.item) ?? '', value: v }
          : undefined;
    if (!fact) return;
    if (cur.type !== undefined) this.judge(cur, fact);
    else if ((cur.facts ??= []).length < MAX_FACTS) cur.facts.push(fact);
    else cur.overflow = true;
  }

  private judge(cur: Current, f: Fact): void {
    if (cur.gate.verdict !== undefined || cur.type === undefined) return;
    this.decide(f.kind === 'id' ? this.guard.id(cur.type, f.value) : this.guard.reference(cur.type, f.path, f.value));
  }

  /** A container closes (before its bracket is written). */
  close(c: AnyContainer): void {
    const cur = this.current;
    if (cur?.item === c) {
      // A resource without a type, or facts past the bound before its type, cannot be judged.
      if (cur.gate.verdict === undefined && (cur.overflow || (cur.hasResource && cur.type === undefined))) this.decide('drop');
      if (cur.gate.verdict === undefined) this.decide(this.guard.end(cur.type));
      if (cur.gate.verdict === 'drop') {
        this.unmuteNext = true;
        // The next entry's comma is decided by what was written: this one was not.
        c.parent!.written--;
        this.dropped++;
      }
      this.current = undefined;
      return;
    }
    if (c.depth === this.bundle + 1 && c.key === 'entry' && this.dropped > 0) {
      this.out.write(`${c.written++ ? ',' : ''}${JSON.stringify(withheldEntry(this.dropped))}`);
    }
  }

  private decide(v: Verdict): void {
    if (v === undefined || !this.current) return;
    this.current.gate.verdict = v;
    if (v === 'drop') this.output.drop(this.current.gate);
  }
}

/**
 * The element path of `c` below the entry's resource, without indexes: `participant.actor` for the
 * Reference at `participant[0].actor`, `subject` for `subject`; undefined outside the resource.
 */
function pathOf(c: AnyContainer, item: AnyContainer): string | undefined {
  const steps: string[] = [];
  for (let x: AnyContainer | undefined = c; x; x = x.parent) {
    if (x.parent === item && x.key === 'resource') return steps.join('.');
    if (x.index < 0 && x.key !== undefined) steps.unshift(x.key);
  }
  return undefined;
}

function withheldEntry(n: number): unknown {
  return {
    resource: {
      resourceType: 'OperationOutcome',
      issue: [
        {
          severity: 'warning',
          code: 'suppressed',
          details: { coding: [{ system: 'urn:fhir-binary-gateway:error', code: 'ENTRIES_WITHHELD' }] },
          diagnostics: `${n} ${n === 1 ? 'entry was' : 'entries were'} withheld: the request is not entitled to ${n === 1 ? 'it' : 'them'}`,
        },
      ],
    },
    search: { mode: 'outcome' },
  };
}
