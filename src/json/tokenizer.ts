import { StringDecoder } from 'node:string_decoder';
import { jsonParser } from 'stream-json/core/parser.js';
import { getManyValues, isMany, none } from 'stream-chain/defs.js';

/**
 * The tokens the rewrite engine works on (stream-json's, with every key, string and number
 * streamed in pieces: nothing is ever accumulated by the tokenizer, whatever its length).
 */
export type JsonToken =
  | {
      readonly name:
        | 'startObject'
        | 'endObject'
        | 'startArray'
        | 'endArray'
        | 'startKey'
        | 'endKey'
        | 'startString'
        | 'endString'
        | 'startNumber'
        | 'endNumber';
    }
  | { readonly name: 'stringChunk' | 'numberChunk'; readonly value: string }
  | { readonly name: 'nullValue'; readonly value: null }
  | { readonly name: 'trueValue'; readonly value: true }
  | { readonly name: 'falseValue'; readonly value: false };

type Step = (input: string | typeof none) => unknown;

/**
 * Turns a byte stream into JSON tokens synchronously, chunk by chunk: stream-json's core
 * tokenizer without its object-mode stream wrapper, which costs more than the tokenizing.
 */
export class JsonTokenizer {
  private readonly utf8 = new StringDecoder('utf8');
  /** `invalid` makes the error for a malformed document: whose document it is decides what it says. */
  constructor(private readonly invalid: (cause: unknown) => Error) {}

  private readonly step = jsonParser({
    packKeys: false,
    packStrings: false,
    packNumbers: false,
    streamKeys: true,
    streamStrings: true,
    streamNumbers: true,
  }) as unknown as Step;

  push(chunk: Buffer): readonly JsonToken[] {
    return this.run(this.utf8.write(chunk));
  }

  /** Ends the input: a truncated document is an error here, not later. */
  end(): readonly JsonToken[] {
    const rest = this.utf8.end();
    return [...(rest ? this.run(rest) : []), ...this.run(none)];
  }

  private run(input: string | typeof none): readonly JsonToken[] {
    let out: unknown;
    try {
      out = this.step(input);
    } catch (err) {
      throw this.invalid(err);
    }
    if (out === none || out === undefined) return [];
    return isMany(out) ? (getManyValues(out) as JsonToken[]) : [out as JsonToken];
  }
}
