import type { Container } from './walker.js';

/** What JSON.stringify escapes in a string: quotes, backslashes, controls, and lone surrogates (well-formed JSON.stringify). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** Characters of a JSON string's content, escaped as JSON.stringify would (most pieces need nothing). */
export function escapeJsonText(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s).slice(1, -1) : s;
}

/**
 * The JSON a rewriting walk writes back, collected in pieces until taken: the walker writes what
 * passes, the policy writes what it rewrites, both through `member` so commas stay right.
 */
export class JsonWriter {
  private parts: string[] = [];
  /** Characters collected and not yet taken. */
  chars = 0;

  write(s: string): void {
    this.parts.push(s);
    this.chars += s.length;
  }

  /** A piece of a string's content. */
  text(s: string): void {
    this.write(escapeJsonText(s));
  }

  /** `"key":`, after a comma unless it is the object's first member. */
  member(c: Container<unknown>, key: string): void {
    this.write(`${c.written++ ? ',' : ''}${JSON.stringify(key)}:`);
  }

  /** A whole member: key and value. */
  pair(c: Container<unknown>, key: string, value: unknown): void {
    this.member(c, key);
    this.write(JSON.stringify(value));
  }

  /** Everything collected so far, as one string; the writer starts over. */
  take(): string {
    const s = this.parts.length === 1 ? this.parts[0] : this.parts.join('');
    this.parts = [];
    this.chars = 0;
    return s;
  }
}
