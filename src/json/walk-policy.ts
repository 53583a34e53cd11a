import type { JsonToken } from './tokenizer.js';
import type { JsonWriter } from './writer.js';

/** The contract between the JSON walker (walker.ts) and the policies that decide what each value is for. */

/**
 * What becomes of a value that is starting:
 * - `pass`: read through (and written back, when the walk has a writer); containers are entered;
 * - `hold`: built whole in memory (bounded by `hold`), then handed to {@link WalkPolicy.held};
 * - `stream`: a string handed over piece by piece ({@link WalkPolicy.chunk}), never kept whole;
 * - `skip`: dropped unread (and unwritten).
 */
export type Route = 'pass' | 'hold' | 'stream' | 'skip';

/** An object or array being read. Policies keep their own per-container facts in `state`. */
export interface Container<S> {
  readonly kind: 'object' | 'array';
  readonly parent: Container<S> | undefined;
  /** The member this container is the value of; an item of an array carries the array's name. */
  readonly name: string | undefined;
  /** Its key in the parent object; undefined for array items and the document itself. */
  readonly key: string | undefined;
  /** Its index in the parent array; -1 otherwise. */
  readonly index: number;
  /** 1 for the document itself. */
  readonly depth: number;
  /** Arrays: items begun so far (the current item is `items - 1`). */
  items: number;
  /** Members (objects) or items (arrays) written so far: where a comma goes. */
  written: number;
  /** Keys seen whose repeats are refused ({@link JsonWalker.once}). */
  seen: Set<string> | undefined;
  state: S;
}

/** What a policy decides and learns; every hook but `route` is optional. A returned promise pauses the walk. */
export interface WalkPolicy<S> {
  /** `parent` undefined: the document itself. `key`: the member name in an object. `first`: the value's first token. */
  route(parent: Container<S> | undefined, key: string | undefined, first: JsonToken): Route;
  /** A container opens (already on the stack): the state it carries. */
  open(c: Container<S>): S;
  /** A container ends, before its closing bracket is written. */
  close?(c: Container<S>): void | Promise<void>;
  held?(parent: Container<S> | undefined, key: string | undefined, value: unknown): void | Promise<void>;
  chunk?(text: string): void | Promise<void>;
  /** A held member whose strings the policy checks itself against {@link WalkOptions.screen}. */
  screensItself?(parent: Container<S> | undefined, key: string | undefined): boolean;
  streamEnd?(): void | Promise<void>;
}

export interface WalkOptions {
  readonly maxDepth: number;
  /** Longer keys are refused (no FHIR element name comes close), or with `longKeys: 'cut'` kept to this length. */
  readonly maxKey: number;
  /**
   * `cut`: a longer key is kept to maxKey characters and the walk goes on, for readers that only
   * look for short keys and must not refuse what they do not read (a cut key never equals one).
   */
  readonly longKeys?: 'refuse' | 'cut';
  /** Bounds of a held value: characters (plus a per-token cost) and nesting. */
  readonly hold: { readonly maxChars: number; readonly maxDepth: number };
  /** A string value equal to `text` anywhere (passed, held or streamed) is refused with `error()`. */
  readonly forbid?: { readonly text: string; error(): Error };
  /**
   * A string value (passed or held, not streamed content) holding every one of `parts`, in that
   * order, with none of `breaks` between two of them (text-screen.ts), is refused with `error()`;
   * a policy may keep a held member for its own check ({@link WalkPolicy.screensItself}).
   */
  readonly screen?: { readonly parts: readonly string[]; readonly breaks: RegExp; error(): Error };
  /** Writes what passes back out; absent for walks that only read. */
  readonly writer?: JsonWriter;
  /** What the document is, for problems: `the body`, `the response`, … */
  readonly subject: string;
  /** The error for a document that is malformed or past a limit, whose document it is deciding which. */
  fail(problem: string, cause?: unknown): Error;
}

/** `.content[0].attachment`: where `c` sits below `from` (an ancestor), as a FHIRPath-like path. */
export function pathBelow<S>(from: Container<S>, c: Container<S>): string {
  let path = '';
  for (let x: Container<S> | undefined = c; x && x !== from; x = x.parent) {
    path = (x.index >= 0 ? `[${x.index}]` : `.${x.key ?? ''}`) + path;
  }
  return path;
}
