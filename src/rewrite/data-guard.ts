import { Transform, type TransformCallback } from 'node:stream';
import { BLOB_EXTENSION_URL } from '../binary/reference.js';
import { GatewayError } from '../errors.js';
import { NOT_ATTACHMENT } from './attachment-kinds.js';
import { JsonTokenizer } from './json-tokens.js';

const MAX_DEPTH = 128;

/**
 * For FHIR JSON bodies the gateway passes on rather than rewrites (operation bodies: Parameters,
 * Bundles for `$process-message`, `$submit-attachment`, …): the bytes go through unchanged, but
 * attachment data at or above `minBytes` (decoded) is refused, and so is our blob reference. An
 * operation may store what it receives, and the upstream must never hold large attachment data
 * or a reference the gateway did not write.
 */
export class DataGuard extends Transform {
  private readonly tokens = new JsonTokenizer();
  /** The member name of each open container (array items carry their array's). */
  private readonly names: (string | undefined)[] = [];
  private key: string | undefined;
  private lastKey: string | undefined;
  /** Characters of the `data` string being read, when it is attachment content. */
  private data: number | undefined;
  private tail = '';
  private nextIsData = false;
  private probe: string | undefined;

  constructor(private readonly minBytes: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      for (const t of this.tokens.push(chunk)) this.token(t);
    } catch (err) {
      cb(err as Error);
      return;
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    try {
      for (const t of this.tokens.end()) this.token(t);
      if (this.names.length) throw new GatewayError('BAD_REQUEST', 'the body is not valid JSON');
    } catch (err) {
      cb(err as Error);
      return;
    }
    cb();
  }

  private token(t: ReturnType<JsonTokenizer['push']>[number]): void {
    switch (t.name) {
      case 'startKey':
        this.key = '';
        return;
      case 'endKey':
        this.lastKey = this.key;
        this.nextIsData = this.key === 'data' && !NOT_ATTACHMENT.has(this.names[this.names.length - 1] ?? '');
        this.key = undefined;
        return;
      case 'startObject':
      case 'startArray': {
        this.nextIsData = false;
        const parentIsArray = this.arrays[this.arrays.length - 1] === true;
        if (this.names.length >= MAX_DEPTH) throw new GatewayError('BAD_REQUEST', 'the JSON is nested too deeply');
        this.names.push(parentIsArray ? this.names[this.names.length - 1] : this.lastKey);
        this.arrays.push(t.name === 'startArray');
        return;
      }
      case 'endObject':
      case 'endArray':
        this.names.pop();
        this.arrays.pop();
        return;
      case 'startString':
        this.data = this.nextIsData ? 0 : undefined;
        this.nextIsData = false;
        this.probe = '';
        return;
      case 'stringChunk':
        if (this.key !== undefined) {
          this.key = this.key.length < 1024 ? this.key + t.value : this.key;
          return;
        }
        if (this.data !== undefined) {
          this.data += t.value.length;
          this.tail = (this.tail + t.value).slice(-2);
          // A lower bound while it streams (padding unknown yet): refused as early as it is certain.
          if (Math.floor((this.data * 3) / 4) - 2 >= this.minBytes) throw this.tooLarge();
        }
        if (this.probe !== undefined)
          this.probe = this.probe.length + t.value.length <= BLOB_EXTENSION_URL.length ? this.probe + t.value : undefined;
        return;
      case 'endString':
        if (this.data !== undefined && this.data > 0) {
          const pad = this.tail.endsWith('==') ? 2 : this.tail.endsWith('=') ? 1 : 0;
          if (Math.floor((this.data * 3) / 4) - pad >= this.minBytes) throw this.tooLarge();
        }
        this.tail = '';
        if (this.probe === BLOB_EXTENSION_URL) throw new GatewayError('BAD_REQUEST', 'blob references are written by the gateway only');
        this.probe = undefined;
        this.data = undefined;
        return;
      default:
        this.nextIsData = false;
    }
  }

  private readonly arrays: boolean[] = [];

  private tooLarge(): GatewayError {
    return new GatewayError(
      'PAYLOAD_TOO_LARGE',
      `attachment data in an operation body must stay under externalize.minBytes (${this.minBytes} bytes): store the content first (create/update, $binary-access-write) and send the resource that refers to it`,
    );
  }
}
