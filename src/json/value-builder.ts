import type { JsonToken } from './tokenizer.js';

/** What each token counts for against the budget, besides its characters: `[{},{},…]` costs memory with no text at all. */
const TOKEN_COST = 16;

export interface ValueLimits {
  /** Budget in characters of text plus TOKEN_COST per value, container and key (not per piece of a string). */
  readonly maxCost: number;
  readonly maxDepth: number;
  /** The error to throw past a limit (what it says depends on whose JSON it is). */
  readonly tooLarge: (why: 'too large' | 'nested too deeply') => Error;
  /** Called with every completed string: a caller may refuse one (it throws). */
  readonly onString?: (s: string) => void;
}

/**
 * Builds one JSON value from its tokens, in memory and bounded: for the few small members the
 * rewrite engine must keep while everything around them streams by.
 */
export class ValueBuilder {
  private readonly stack: (unknown[] | Record<string, unknown>)[] = [];
  private pendingKey: string | undefined;
  private text: string | undefined;
  private cost = 0;
  value: unknown;

  constructor(private readonly limits: ValueLimits) {}

  /** Takes the next token; true once the value is complete. */
  push(t: JsonToken): boolean {
    // Pieces of a string or number cost their characters only: what a value costs must not depend
    // on how the network cut it.
    if (t.name !== 'stringChunk' && t.name !== 'numberChunk') {
      this.cost += TOKEN_COST;
      if (this.cost > this.limits.maxCost) throw this.limits.tooLarge('too large');
    }
    switch (t.name) {
      case 'startObject':
      case 'startArray': {
        // No prototype: a member named `__proto__` is a member like any other, not the object's
        // prototype (whose members every later read would see as the object's own).
        const c = t.name === 'startObject' ? (Object.create(null) as Record<string, unknown>) : [];
        this.put(c);
        if (this.stack.length >= this.limits.maxDepth) throw this.limits.tooLarge('nested too deeply');
        this.stack.push(c);
        return false;
      }
      case 'endObject':
      case 'endArray':
        this.stack.pop();
        return this.stack.length === 0;
      case 'startKey':
      case 'startString':
      case 'startNumber':
        this.text = '';
        return false;
      case 'stringChunk':
      case 'numberChunk':
        this.text += t.value;
        this.cost += t.value.length;
        if (this.cost > this.limits.maxCost) throw this.limits.tooLarge('too large');
        return false;
      case 'endKey':
        this.pendingKey = this.text;
        this.text = undefined;
        return false;
      case 'endString':
        this.limits.onString?.(this.text!);
        return this.put(this.text);
      case 'endNumber':
        return this.put(Number(this.text));
      default:
        return this.put(t.value);
    }
  }

  /** Places a scalar or container; true when it was the whole value. */
  private put(v: unknown): boolean {
    this.text = undefined;
    const top = this.stack[this.stack.length - 1];
    if (!top) {
      this.value = v;
      return typeof v !== 'object' || v === null;
    }
    if (Array.isArray(top)) top.push(v);
    else {
      top[this.pendingKey!] = v;
      this.pendingKey = undefined;
    }
    return false;
  }
}
