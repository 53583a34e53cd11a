import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { Busboy, type BusboyHeaders, type BusboyInstance } from '@fastify/busboy';
import { GatewayError } from '../errors/catalogue.js';
import { SizeLimit } from '../lib/size-limit.js';

/** One file part, as a resolver takes it: its bytes stream from the request as they are read. */
export interface FilePart {
  readonly key: string;
  readonly stream: Readable;
  readonly filename: string;
  readonly mimeType: string;
}

export interface MultipartLimits {
  /** The `operations` and `map` fields, each. */
  readonly maxDocumentBytes: number;
  readonly maxFiles: number;
  /** The whole body (the request's rule, `limits.maxRequestBytes`), and that rule's name for the refusal. */
  readonly maxRequestBytes: number;
  readonly rule: string;
}

/**
 * A GraphQL multipart request (https://github.com/jaydenseric/graphql-multipart-request-spec),
 * read as it arrives with @fastify/busboy: the `operations` and `map` fields first, then the file
 * parts, each handed to the resolver that asks for it and streamed into the store from there —
 * nothing of a file is held. Resolvers take files in the order the parts arrive (mutations run
 * one after another): a part that is not the one asked for is refused, not buffered.
 */
export class MultipartRequest {
  private readonly busboy: BusboyInstance;
  private operations: string | undefined;
  private map: string | undefined;
  private ready: { resolve(v: { operations: string; map: string }): void; reject(e: Error): void } | undefined;
  /** Parts that arrived before anyone asked for them (their streams wait, unread), in order. */
  private readonly arrived: FilePart[] = [];
  private waiting: { key: string; resolve(p: FilePart): void; reject(e: Error): void } | undefined;
  private failure: Error | undefined;
  private finished = false;
  /** Keys handed out: each part is read once. */
  private readonly taken = new Set<string>();
  /** The streams of the parts handed out. */
  private readonly reading = new Set<Readable>();

  private constructor(req: IncomingMessage, limits: MultipartLimits) {
    this.busboy = new Busboy({
      headers: req.headers as BusboyHeaders,
      limits: {
        fieldNameSize: 64,
        fieldSize: limits.maxDocumentBytes,
        fields: 2,
        files: limits.maxFiles,
        parts: limits.maxFiles + 2,
        headerPairs: 32,
      },
    });
    this.busboy.on('field', (name: string, value: string, _nameTruncated: boolean, valueTruncated: boolean) => {
      if (valueTruncated)
        return this.fail(new GatewayError('PAYLOAD_TOO_LARGE', `the '${name.slice(0, 32)}' part is longer than graphql.maxDocumentBytes`));
      if (name === 'operations' && this.operations === undefined) this.operations = value;
      else if (name === 'map' && this.map === undefined && this.operations !== undefined) this.map = value;
      else
        return this.fail(
          new GatewayError('BAD_REQUEST', "a multipart GraphQL request has one 'operations' field, then one 'map' field, then the files"),
        );
      if (this.operations !== undefined && this.map !== undefined) this.ready?.resolve({ operations: this.operations, map: this.map });
      return undefined;
    });
    this.busboy.on('file', (key: string, stream: Readable, filename: string, _enc: string, mimeType: string) => {
      if (this.operations === undefined || this.map === undefined) {
        stream.resume();
        return this.fail(new GatewayError('BAD_REQUEST', "file parts come after the 'operations' and 'map' fields"));
      }
      const part: FilePart = { key, stream, filename, mimeType };
      if (this.waiting) this.hand(part);
      else this.arrived.push(part);
      return undefined;
    });
    this.busboy.on('filesLimit', () => this.fail(new GatewayError('PAYLOAD_TOO_LARGE', 'more file parts than graphql.maxFiles')));
    this.busboy.on('partsLimit', () =>
      this.fail(new GatewayError('PAYLOAD_TOO_LARGE', 'more parts than graphql.maxFiles and the two fields')),
    );
    this.busboy.on('fieldsLimit', () =>
      this.fail(new GatewayError('BAD_REQUEST', "a multipart GraphQL request has only the 'operations' and 'map' fields")),
    );
    this.busboy.on('error', (err: unknown) =>
      this.fail(new GatewayError('BAD_REQUEST', 'the multipart body is malformed', { cause: err })),
    );
    this.busboy.on('finish', () => {
      this.finished = true;
      if (this.operations === undefined || this.map === undefined)
        this.fail(new GatewayError('BAD_REQUEST', "a multipart GraphQL request needs the 'operations' and 'map' fields"));
      this.waiting?.reject(new GatewayError('BAD_REQUEST', `no file part '${this.waiting.key}' arrived`));
      this.waiting = undefined;
    });
    req.on('error', (err) => this.fail(new GatewayError('BAD_REQUEST', 'the request body was cut', { cause: err })));
  }

  /** Starts reading `req`; resolves once `operations` and `map` are in (the files still to come). */
  static async open(
    req: IncomingMessage,
    limits: MultipartLimits,
  ): Promise<{ request: MultipartRequest; operations: string; map: string }> {
    let request: MultipartRequest;
    try {
      request = new MultipartRequest(req, limits);
    } catch (err) {
      // No boundary, or a Content-Type busboy cannot read: the request, not the gateway, is wrong.
      throw new GatewayError('BAD_REQUEST', 'the multipart Content-Type is malformed (no boundary?)', { cause: err });
    }
    // The whole body within the request's rule, also when it is chunked (a declared length was checked before).
    const counted = req.pipe(new SizeLimit(limits.maxRequestBytes, limits.rule));
    counted.on('error', (err) => request.fail(err));
    const fields = await new Promise<{ operations: string; map: string }>((resolve, reject) => {
      request.ready = { resolve, reject };
      counted.pipe(request.busboy);
    });
    request.ready = undefined;
    return { request, ...fields };
  }

  /** The file part `key`, once it arrives: it must be the next one. */
  take(key: string): Promise<FilePart> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.taken.has(key)) return Promise.reject(new GatewayError('BAD_REQUEST', `file part '${key}' is used twice`));
    this.taken.add(key);
    const part = this.arrived.shift();
    if (part) {
      if (part.key !== key) {
        // Not read: let the parser go on past it (the request is refused, its parts drained).
        part.stream.resume();
        return Promise.reject(this.outOfOrder(part.key, key));
      }
      this.reading.add(part.stream);
      return Promise.resolve(part);
    }
    if (this.finished) return Promise.reject(new GatewayError('BAD_REQUEST', `no file part '${key}' arrived`));
    return new Promise<FilePart>((resolve, reject) => {
      this.waiting = { key, resolve, reject };
    });
  }

  /** Whether the whole body has been read (else the answer closes the connection). */
  get complete(): boolean {
    return this.finished;
  }

  /**
   * The operation is done: parts not taken are drained, not stored. The answer has closed the
   * connection if the body was not all read (api.ts), so what is still in flight ends with it.
   */
  stop(): void {
    for (const part of this.arrived.splice(0)) part.stream.resume();
    this.busboy.on('file', (_key: string, stream: Readable) => stream.resume());
  }

  private hand(part: FilePart): void {
    const w = this.waiting!;
    this.waiting = undefined;
    if (part.key !== w.key) {
      part.stream.resume();
      w.reject(this.outOfOrder(part.key, w.key));
      return;
    }
    this.reading.add(part.stream);
    w.resolve(part);
  }

  private outOfOrder(got: string, wanted: string): GatewayError {
    return new GatewayError(
      'BAD_REQUEST',
      `file part '${got.slice(0, 32)}' arrived where '${wanted.slice(0, 32)}' was needed: send file parts in the order the operation uses them`,
    );
  }

  private fail(err: Error): void {
    // A part being stored ends with the request's failure, rather than wait for bytes that will not come.
    for (const stream of this.reading) if (!stream.readableEnded) stream.destroy(err);
    this.failure ??= err;
    this.ready?.reject(err);
    this.waiting?.reject(err);
    this.waiting = undefined;
  }
}
