import type { Transform } from 'node:stream';
import { GatewayError } from '../errors/catalogue.js';
import { NOT_ATTACHMENT } from '../fhir/attachment-kinds.js';
import { BLOB_EXTENSION_URL } from '../fhir/blob-reference.js';
import { SIGNED_FILE_URL_SCREEN } from '../fhir/content-link.js';
import type { JsonToken } from '../json/tokenizer.js';
import { WalkThrough } from '../json/walk-through.js';
import { JsonWalker, type Container, type Route, type WalkPolicy } from '../json/walker.js';
import { decodedSize } from '../lib/base64.js';

/**
 * For FHIR JSON bodies the gateway passes on rather than rewrites (operation bodies: Parameters,
 * Bundles for `$process-message`, `$submit-attachment`, …): the bytes go through unchanged, but
 * attachment data at or above `minBytes` (decoded) is refused, and so is our blob reference. An
 * operation may store what it receives, and the upstream must never hold large attachment data
 * or a reference the gateway did not write.
 */
export function operationBodyGuard(minBytes: number): Transform {
  return new WalkThrough(new JsonWalker(new OperationBodyGuard(minBytes), guardWalk));
}

const guardWalk = {
  maxDepth: 128,
  maxKey: 1024,
  // The body is passed on as it is: only `data` and our URL are refused, not long keys.
  longKeys: 'cut' as const,
  hold: { maxChars: 0, maxDepth: 0 },
  subject: 'the body',
  forbid: { text: BLOB_EXTENSION_URL, error: () => new GatewayError('BAD_REQUEST', 'blob references are written by the gateway only') },
  screen: SIGNED_FILE_URL_SCREEN,
  fail: (problem: string, cause?: unknown) => new GatewayError('BAD_REQUEST', problem, { cause }),
};

class OperationBodyGuard implements WalkPolicy<undefined> {
  /** Characters of the attachment `data` being read, and its last two (for padding). */
  private chars = 0;
  private tail = '';

  constructor(private readonly minBytes: number) {}

  open(): undefined {
    return undefined;
  }

  /** Attachment content is a string `data` in anything but SampledData and Signature. */
  route(parent: Container<undefined> | undefined, key: string | undefined, first: JsonToken): Route {
    if (key === 'data' && first.name === 'startString' && !NOT_ATTACHMENT.has(parent?.name ?? '')) {
      this.chars = 0;
      this.tail = '';
      return 'stream';
    }
    return 'pass';
  }

  chunk(text: string): void {
    this.chars += text.length;
    this.tail = (this.tail + text).slice(-2);
    // A lower bound while it streams (the padding is not known yet): refused as early as it is certain.
    if (decodedSize(this.chars, '==') >= this.minBytes) throw this.tooLarge();
  }

  streamEnd(): void {
    if (this.chars > 0 && decodedSize(this.chars, this.tail) >= this.minBytes) throw this.tooLarge();
  }

  private tooLarge(): GatewayError {
    return new GatewayError(
      'PAYLOAD_TOO_LARGE',
      `attachment data in an operation body must stay under externalize.minBytes (${this.minBytes} bytes): store the content first (create/update, $binary-access-write) and send the resource that refers to it`,
    );
  }
}
