import type { JsonToken } from '../json/tokenizer.js';
import type { Container, Route } from '../json/walker.js';
import type { JsonWriter } from '../json/writer.js';
import { EntryGates, type Gates } from './entry-gate.js';
import type { InflateOutput } from './inflate-output.js';
import type { EntryGuard } from './params.js';

type AnyContainer = Container<unknown>;

/**
 * A batch or transaction answer: entry `i`'s `resource` is the answer to request entry `i` (FHIR
 * keeps the order), so a search, history or operation entry's Bundle is guarded as it would be
 * sent alone, by the guard of that entry (`guards`). One nested Bundle streams at a time: its
 * gates are made when it opens and dropped when it closes; outside them nothing is held back.
 */
export class NestedGates implements Gates {
  private active: { readonly at: AnyContainer; readonly gates: EntryGates } | undefined;

  constructor(
    private readonly guards: ReadonlyMap<number, EntryGuard>,
    private readonly out: JsonWriter,
    private readonly output: InflateOutput,
  ) {}

  settle(): void {
    this.active?.gates.settle();
  }

  get deciding(): boolean {
    return this.active?.gates.deciding ?? false;
  }

  get dropping(): boolean {
    return this.active?.gates.dropping ?? false;
  }

  get inEntry(): boolean {
    return this.active?.gates.inEntry ?? false;
  }

  route(parent: AnyContainer, key: string | undefined, first: JsonToken): Route | undefined {
    return this.active?.gates.route(parent, key, first);
  }

  open(c: AnyContainer): void {
    if (this.active) return this.active.gates.open(c);
    const item = c.parent;
    // `entry[i].resource` of the answer (depth 4): the answer to request entry i.
    if (c.kind !== 'object' || c.key !== 'resource' || c.depth !== 4 || item?.parent?.key !== 'entry' || item.parent.depth !== 2) return;
    const guard = this.guards.get(item.index);
    if (guard) this.active = { at: c, gates: new EntryGates(guard, this.out, this.output, 3) };
  }

  held(c: AnyContainer, key: string, v: unknown): void {
    this.active?.gates.held(c, key, v);
  }

  close(c: AnyContainer): void {
    if (!this.active) return;
    this.active.gates.close(c);
    if (this.active.at === c) this.active = undefined;
  }
}
