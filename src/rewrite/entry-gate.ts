import type { Container } from '../json/walker.js';
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
export class EntryGates {
  private current: { readonly item: AnyContainer; readonly gate: EntryGate; type: string | undefined } | undefined;
  private unmuteNext = false;
  private dropped = 0;

  constructor(
    private readonly guard: EntryGuard,
    private readonly out: JsonWriter,
    private readonly output: InflateOutput,
  ) {}

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

  /** An object opens (its `{`, and the comma before it, already written). */
  open(c: AnyContainer): void {
    if (c.kind !== 'object' || c.depth !== 3 || c.parent?.key !== 'entry') return;
    const text = this.out.take();
    const prefix = text.endsWith(',{') ? ',{' : '{';
    this.out.write(text.slice(0, text.length - prefix.length));
    const gate = new EntryGate(prefix);
    this.output.enqueue(gate);
    this.current = { item: c, gate, type: undefined };
  }

  /** A held member of `c` is complete. */
  held(c: AnyContainer, key: string, v: unknown): void {
    const cur = this.current;
    if (!cur || cur.gate.verdict !== undefined || typeof v !== 'string') return;
    const resource = c.parent === cur.item && c.key === 'resource';
    if (resource && key === 'resourceType') {
      cur.type = v;
      this.decide(this.guard.type(v));
    } else if (resource && key === 'id' && cur.type !== undefined) {
      this.decide(this.guard.id(cur.type, v));
    } else if (key === 'reference' && cur.type !== undefined) {
      const element = elementOf(c, cur.item);
      if (element !== undefined) this.decide(this.guard.reference(cur.type, element, v));
    }
  }

  /** A container closes (before its bracket is written). */
  close(c: AnyContainer): void {
    const cur = this.current;
    if (cur?.item === c) {
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
    if (c.depth === 2 && c.key === 'entry' && this.dropped > 0) {
      this.out.write(`${c.written++ ? ',' : ''}${JSON.stringify(withheldEntry(this.dropped))}`);
    }
  }

  private decide(v: Verdict): void {
    if (v === undefined || !this.current) return;
    this.current.gate.verdict = v;
    if (v === 'drop') this.output.drop(this.current.gate);
  }
}

/** The element of the entry's resource that `c` sits in (`subject` for `subject.reference`). */
function elementOf(c: AnyContainer, item: AnyContainer): string | undefined {
  for (let x: AnyContainer | undefined = c; x?.parent; x = x.parent) {
    if (x.parent.parent === item && x.parent.key === 'resource') return x.key ?? x.name;
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
