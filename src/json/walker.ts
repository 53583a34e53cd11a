import { TextScreen } from './text-screen.js';
import { JsonTokenizer, type JsonToken } from './tokenizer.js';
import { ValueBuilder } from './value-builder.js';
import type { Container, WalkOptions, WalkPolicy } from './walk-policy.js';
import type { JsonWriter } from './writer.js';

export type { Container, Route, WalkOptions, WalkPolicy } from './walk-policy.js';
export { pathBelow } from './walk-policy.js';

const enum Mode {
  Value,
  Key,
  String,
  Number,
  Hold,
  Stream,
  Skip,
  SkipScalar,
}

/**
 * The one JSON walk of the rewrite engine and its readers: tokens from {@link JsonTokenizer}
 * (nothing accumulated, whatever a value's length), the container stack, keys, depth and key
 * limits, refused duplicates, held members, and the forbidden-string probe. What to do with each
 * value is the policy's ({@link WalkPolicy.route}); everything else is here, once.
 *
 * Synchronous for ordinary tokens: `push` returns a promise only when a policy hook did.
 */
export class JsonWalker<S> {
  private readonly tokens: JsonTokenizer;
  private readonly stack: Container<S>[] = [];
  private mode = Mode.Value;
  private keyText = '';
  private key: string | undefined;
  private skipDepth = 0;
  /** The forbidden-string probe of the string being read; undefined once it cannot match. */
  private probe: string | undefined;
  /** The screen of the string being passed (WalkOptions.screen); undefined without one. */
  private readonly screen: TextScreen | undefined;
  private hold: { readonly parent: Container<S> | undefined; readonly key: string | undefined; readonly builder: ValueBuilder } | undefined;
  private readonly out: JsonWriter | undefined;
  /** Whether any token was read (an empty document is the caller's to judge). */
  started = false;
  /** Whether a whole top-level value has been read. */
  done = false;

  constructor(
    private readonly policy: WalkPolicy<S>,
    private readonly opts: WalkOptions,
  ) {
    this.tokens = new JsonTokenizer((cause) => opts.fail(`${opts.subject} is not valid JSON`, cause));
    this.out = opts.writer;
    this.screen = opts.screen ? new TextScreen(opts.screen.parts, opts.screen.breaks) : undefined;
  }

  /** The innermost open container. */
  get top(): Container<S> | undefined {
    return this.stack[this.stack.length - 1];
  }

  push(chunk: Buffer): Promise<void> | undefined {
    return this.run(this.tokens.push(chunk), 0);
  }

  /** The input is complete: a truncated document is an error here. */
  end(): Promise<void> | undefined {
    const p = this.run(this.tokens.end(), 0);
    return p ? p.then(() => this.checkEnded()) : this.checkEnded();
  }

  /**
   * Refuses a second `key` in `c` (parsers disagree on which of two equal keys wins, so what the
   * upstream acts on could differ from what was checked). Returns true for use in conditions.
   */
  once(c: Container<S>, key: string): true {
    c.seen ??= new Set();
    if (c.seen.has(key)) throw this.opts.fail(`duplicate member "${key}" in one JSON object`);
    c.seen.add(key);
    return true;
  }

  private checkEnded(): undefined {
    if (!this.done || this.mode !== Mode.Value) throw this.opts.fail(`${this.opts.subject} ends inside a JSON value`);
    return undefined;
  }

  private run(tokens: readonly JsonToken[], from: number): Promise<void> | undefined {
    for (let i = from; i < tokens.length; i++) {
      const pending = this.token(tokens[i]);
      if (pending) return pending.then(() => this.run(tokens, i + 1));
    }
    return undefined;
  }

  private token(t: JsonToken): Promise<void> | undefined {
    this.started = true;
    switch (this.mode) {
      case Mode.Key:
        if (t.name === 'stringChunk') {
          this.keyText += t.value;
          if (this.keyText.length > this.opts.maxKey) {
            if (this.opts.longKeys !== 'cut') throw this.opts.fail('a JSON key is too long');
            this.keyText = this.keyText.slice(0, this.opts.maxKey);
          }
        } else if (t.name === 'endKey') {
          this.key = this.keyText;
          this.mode = Mode.Value;
        }
        return undefined;
      case Mode.String:
        if (t.name === 'stringChunk') {
          this.out?.text(t.value);
          this.watch(t.value);
          if (this.screen?.piece(t.value)) throw this.opts.screen!.error();
        } else {
          this.out?.write('"');
          this.endWatch();
          if (this.screen?.end()) throw this.opts.screen!.error();
          this.valueEnded();
        }
        return undefined;
      case Mode.Number:
        if (t.name === 'numberChunk') this.out?.write(t.value);
        else this.valueEnded();
        return undefined;
      case Mode.Hold:
        return this.holdToken(t);
      case Mode.Stream:
        if (t.name === 'stringChunk') {
          this.watch(t.value);
          return this.policy.chunk?.(t.value) as Promise<void> | undefined;
        }
        this.endWatch();
        this.valueEnded();
        return this.policy.streamEnd?.() as Promise<void> | undefined;
      case Mode.Skip:
        if (t.name === 'startObject' || t.name === 'startArray') this.skipDepth++;
        else if ((t.name === 'endObject' || t.name === 'endArray') && --this.skipDepth === 0) this.valueEnded();
        return undefined;
      case Mode.SkipScalar:
        if (t.name === 'endString' || t.name === 'endNumber') this.valueEnded();
        return undefined;
      case Mode.Value:
        break;
    }
    switch (t.name) {
      case 'startKey':
        this.keyText = '';
        this.mode = Mode.Key;
        return undefined;
      case 'endObject':
      case 'endArray':
        return this.close();
      default:
        return this.value(t);
    }
  }

  /** The first token of a value: the policy routes it. */
  private value(t: JsonToken): Promise<void> | undefined {
    const parent = this.top;
    if (!parent && this.done) throw this.opts.fail(`${this.opts.subject} is not valid JSON`);
    const key = parent?.kind === 'object' ? this.key : undefined;
    this.key = undefined;
    if (parent?.kind === 'array') parent.items++;
    const route = this.policy.route(parent, key, t);
    if (route === 'hold') return this.startHold(parent, key, t);
    if (route === 'skip') {
      if (t.name === 'startObject' || t.name === 'startArray') {
        this.skipDepth = 1;
        this.mode = Mode.Skip;
      } else if (t.name === 'startString' || t.name === 'startNumber') this.mode = Mode.SkipScalar;
      else this.valueEnded();
      return undefined;
    }
    if (route === 'stream') {
      // Only a string can be streamed; the policy asked for it knowing the first token.
      this.mode = Mode.Stream;
      this.probe = this.opts.forbid ? '' : undefined;
      return undefined;
    }
    const out = this.out;
    if (out && parent) {
      if (parent.kind === 'object') out.member(parent, key!);
      else if (parent.written++) out.write(',');
    }
    switch (t.name) {
      case 'startObject':
      case 'startArray':
        out?.write(t.name === 'startObject' ? '{' : '[');
        this.open(t.name === 'startObject' ? 'object' : 'array', parent, key);
        return undefined;
      case 'startString':
        out?.write('"');
        this.mode = Mode.String;
        this.probe = this.opts.forbid ? '' : undefined;
        this.screen?.reset();
        return undefined;
      case 'startNumber':
        this.mode = Mode.Number;
        return undefined;
      case 'nullValue':
      case 'trueValue':
      case 'falseValue':
        out?.write(String(t.value));
        this.valueEnded();
        return undefined;
      default:
        throw this.opts.fail(`${this.opts.subject} is not valid JSON`);
    }
  }

  private open(kind: 'object' | 'array', parent: Container<S> | undefined, key: string | undefined): void {
    if (this.stack.length >= this.opts.maxDepth) throw this.opts.fail(`${this.opts.subject} is nested too deeply`);
    const c: Container<S> = {
      kind,
      parent,
      name: parent?.kind === 'array' ? parent.name : key,
      key,
      index: parent?.kind === 'array' ? parent.items - 1 : -1,
      depth: this.stack.length + 1,
      items: 0,
      written: 0,
      seen: undefined,
      state: undefined as S,
    };
    this.stack.push(c);
    c.state = this.policy.open(c);
  }

  private close(): Promise<void> | undefined {
    const c = this.top;
    if (!c) throw this.opts.fail(`${this.opts.subject} is not valid JSON`);
    const pending = this.policy.close?.(c) as Promise<void> | undefined;
    if (pending) return pending.then(() => this.closed(c));
    this.closed(c);
    return undefined;
  }

  private closed(c: Container<S>): void {
    this.stack.pop();
    this.out?.write(c.kind === 'object' ? '}' : ']');
    if (!this.stack.length) this.done = true;
  }

  /** A scalar (or a skipped value) is complete; at the top level, so is the document. */
  private valueEnded(): void {
    this.mode = Mode.Value;
    if (!this.stack.length) this.done = true;
  }

  private startHold(parent: Container<S> | undefined, key: string | undefined, t: JsonToken): Promise<void> | undefined {
    const forbid = this.opts.forbid;
    const screen = this.opts.screen && !this.policy.screensItself?.(parent, key) ? this.opts.screen : undefined;
    const builder = new ValueBuilder({
      maxCost: this.opts.hold.maxChars,
      maxDepth: this.opts.hold.maxDepth,
      tooLarge: (why) => this.opts.fail(`${key ?? 'a value'} is ${why}`),
      ...(forbid || screen
        ? {
            onString: (s: string) => {
              if (forbid && s === forbid.text) throw forbid.error();
              if (screen && TextScreen.holds(screen.parts, screen.breaks, s)) throw screen.error();
            },
          }
        : {}),
    });
    this.hold = { parent, key, builder };
    this.mode = Mode.Hold;
    return this.holdToken(t);
  }

  private holdToken(t: JsonToken): Promise<void> | undefined {
    const h = this.hold!;
    if (!h.builder.push(t)) return undefined;
    this.hold = undefined;
    this.valueEnded();
    return this.policy.held?.(h.parent, h.key, h.builder.value) as Promise<void> | undefined;
  }

  /** Follows a string against the forbidden text while it is still a prefix of it. */
  private watch(piece: string): void {
    const p = this.probe;
    if (p === undefined) return;
    this.probe = p.length + piece.length <= this.opts.forbid!.text.length ? p + piece : undefined;
  }

  private endWatch(): void {
    if (this.probe !== undefined && this.probe === this.opts.forbid!.text) throw this.opts.forbid!.error();
    this.probe = undefined;
  }
}
