import { GatewayError } from '../errors.js';

const WHITESPACE = /[ \t\r\n]/g;
const NOT_BASE64 = /[^A-Za-z0-9+/=]/;

/**
 * Decodes base64 text that arrives in pieces of any length. Node's decoder skips characters it
 * does not know; this one refuses them, so the bytes stored are exactly the bytes meant. FHIR's
 * base64Binary allows whitespace, which is dropped; `=` may only pad the final group.
 */
export class Base64Decoder {
  private carry = '';
  private padded = false;

  /** Decodes what whole 4-character groups `text` completes; the rest waits for the next piece. */
  push(text: string): Buffer {
    const clean =
      text.includes(' ') || text.includes('\n') || text.includes('\r') || text.includes('\t') ? text.replace(WHITESPACE, '') : text;
    if (this.padded && clean.length > 0) throw invalid('data after the final padded group');
    let s = this.carry + clean;
    if (NOT_BASE64.test(s)) throw invalid('a character outside the base64 alphabet');
    const pad = s.indexOf('=');
    if (pad !== -1) {
      // Padding ends the value: only more padding may follow, within the last group.
      if (!/^=+$/.test(s.slice(pad)) || s.length - pad > 2 || pad % 4 < 2) throw invalid('misplaced padding');
      if (s.length % 4 === 0) this.padded = true;
    }
    const whole = s.length - (s.length % 4);
    this.carry = s.slice(whole);
    s = s.slice(0, whole);
    return s.length ? Buffer.from(s, 'base64') : EMPTY;
  }

  /** The value is complete: a trailing partial group is an error, not something to guess at. */
  end(): void {
    if (this.carry.length) throw invalid('a truncated final group');
  }
}

const EMPTY = Buffer.alloc(0);

function invalid(what: string): GatewayError {
  return new GatewayError('BAD_REQUEST', `attachment data is not valid base64: ${what}`);
}
