/**
 * Follows one string value, piece by piece as the network cut it, for parts that must all appear
 * in it in order within one token: between two parts, none of the `breaks` characters (for a URL
 * in text: white space, quotes, angle brackets). Nothing but a short tail is kept, whatever the
 * string's length. The walker refuses a string once `piece` says so (walk-policy.ts
 * WalkOptions.screen).
 */
export class TextScreen {
  private stage = 0;
  private tail = '';

  constructor(
    private readonly parts: readonly string[],
    private readonly breaks: RegExp,
  ) {}

  /** A new string begins. */
  reset(): void {
    this.stage = 0;
    this.tail = '';
  }

  /** The next piece of the string; true once every part has been seen, in order, in one token. */
  piece(text: string): boolean {
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
    return new TextScreen(parts, breaks).piece(s);
  }
}
