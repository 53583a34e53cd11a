/** `%XX` escapes of the characters the screen looks for, and `%25` (so `%252F` is seen too). */
const PERCENT = /%(2f|5f|3f|25)/gi;
/** HTML character references of the same, and `&amp;` (so `&amp;#63;` is seen too). */
const ENTITY = /&(?:#0*(47|95|63|38)|#x0*(2f|5f|3f|26)|(sol|lowbar|UnderBar|quest|amp));/gi;
const NAMED: Readonly<Record<string, string>> = { sol: '/', lowbar: '_', underbar: '_', quest: '?', amp: '&' };
/** An escape is at most this long (`&#x00003f;`); a `%` or `&` this near the end may be one cut in two. */
const MAX_ESCAPE = 12;

/**
 * The text as a browser or a URL parser could come to read it: percent-escapes and HTML character
 * references of `/`, `_`, `?` (and of `%`/`&` themselves, for double encoding) decoded, three
 * rounds at most.
 */
function decode(text: string): string {
  let s = text;
  for (let i = 0; i < 3 && (s.includes('%') || s.includes('&')); i++) {
    const next = s
      .replace(PERCENT, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)))
      .replace(ENTITY, (_m, dec?: string, hex?: string, name?: string) =>
        dec !== undefined
          ? String.fromCharCode(Number(dec))
          : hex !== undefined
            ? String.fromCharCode(parseInt(hex, 16))
            : NAMED[name!.toLowerCase()],
      );
    if (next === s) break;
    s = next;
  }
  return s;
}

/**
 * Follows one string value, piece by piece as the network cut it, for parts that must all appear
 * in it in order within one token: between two parts, none of the `breaks` characters (for a URL
 * in text: white space, quotes, angle brackets). The text is read decoded as a browser could read
 * it (percent-escapes, HTML character references: a URL inside a viewer link's query or a
 * narrative `href`). Nothing but a short tail is kept, whatever the string's length. The walker
 * refuses a string once `piece` or `end` says so (walk-policy.ts WalkOptions.screen).
 */
export class TextScreen {
  private stage = 0;
  /** Decoded text a part may have begun in. */
  private tail = '';
  /** Raw text held back: it may be the start of an escape the next piece ends. */
  private raw = '';

  constructor(
    private readonly parts: readonly string[],
    private readonly breaks: RegExp,
  ) {}

  /** A new string begins. */
  reset(): void {
    this.stage = 0;
    this.tail = '';
    this.raw = '';
  }

  /** The next piece of the string; true once every part has been seen, in order, in one token. */
  piece(text: string): boolean {
    const all = this.raw + text;
    const from = Math.max(0, all.length - MAX_ESCAPE);
    const pct = all.lastIndexOf('%');
    const amp = all.lastIndexOf('&');
    const cut = Math.max(pct >= from ? pct : -1, amp >= from ? amp : -1);
    this.raw = cut >= 0 ? all.slice(cut) : '';
    return this.match(decode(cut >= 0 ? all.slice(0, cut) : all));
  }

  /** The string ended: what was held back is read too. */
  end(): boolean {
    const rest = this.raw;
    this.raw = '';
    return rest ? this.match(decode(rest)) : this.stage >= this.parts.length;
  }

  private match(text: string): boolean {
    let rest = this.tail + text;
    while (this.stage < this.parts.length) {
      const part = this.parts[this.stage];
      const at = rest.indexOf(part);
      if (this.stage > 0) {
        // A break before the next part ends this token: look for the first part again after it.
        const cut = (at < 0 ? rest : rest.slice(0, at)).search(this.breaks);
        if (cut >= 0) {
          this.stage = 0;
          rest = rest.slice(cut + 1);
          continue;
        }
      }
      if (at < 0) {
        // A part may begin in this piece and end in the next: its length less one is kept.
        this.tail = rest.slice(Math.max(0, rest.length - (part.length - 1)));
        return false;
      }
      rest = rest.slice(at + part.length);
      this.stage++;
    }
    this.tail = '';
    return true;
  }

  /** Whether a whole string holds every part, in order, in one token. */
  static holds(parts: readonly string[], breaks: RegExp, s: string): boolean {
    const screen = new TextScreen(parts, breaks);
    return screen.piece(s) || screen.end();
  }
}
