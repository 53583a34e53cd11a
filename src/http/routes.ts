import type { IncomingMessage } from 'node:http';
import { BinaryAccess } from '../binary/binary-access.js';
import type { BinaryReads } from '../binary/binary-read.js';
import type { BinaryWrites } from '../binary/binary-write.js';
import type { FileUrls } from '../binary/file-urls.js';
import { ResourceWrites } from '../binary/resource-writes.js';
import type { Interaction, InteractionKind } from '../fhir/interaction.js';
import type { Exchange } from '../security/exchange.js';
import { PassThroughRoutes } from '../upstream/pass-through.js';

/** One row of the route table: which authorized requests it serves, and how. */
export interface Route {
  readonly name: string;
  matches(i: Interaction, req: IncomingMessage): boolean;
  handle(x: Exchange): Promise<void> | void;
}

/** The handlers the table dispatches to (src/app/server.ts builds them). */
export interface Handlers {
  readonly access: BinaryAccess;
  readonly resources: ResourceWrites;
  readonly binaryReads: BinaryReads;
  readonly binaryWrites: BinaryWrites;
  readonly passThrough: PassThroughRoutes;
  readonly files: FileUrls;
}

const binary =
  (...kinds: InteractionKind[]) =>
  (i: Interaction): boolean =>
    i.resourceType === 'Binary' && kinds.includes(i.kind);

const operation =
  (name: string) =>
  (i: Interaction): boolean =>
    i.kind === 'operation' && i.operation === name;

/**
 * Where an authorized request goes, first match wins: the binary plane's handlers for what it
 * owns (Binary, the binary-access operations, raw Media, every resource write), then operations
 * whose bodies must be checked, then plain pass-through. Batch and transaction Bundles are the
 * flow's own (they are authorized entry by entry before they have an exchange).
 */
export function routeTable(h: Handlers): readonly Route[] {
  return [
    { name: 'binary-access-read', matches: operation('binary-access-read'), handle: (x) => h.access.read(x) },
    { name: 'file-url', matches: operation('file-url'), handle: (x) => h.files.issue(x) },
    { name: 'binary-access-write', matches: operation('binary-access-write'), handle: (x) => h.access.write(x) },
    { name: 'media-raw', matches: (i, req) => BinaryAccess.wantsRawMedia(i, req.headers.accept), handle: (x) => h.access.rawMedia(x) },
    { name: 'resource-write', matches: (i) => ResourceWrites.owns(i) && i.kind !== 'patch', handle: (x) => h.resources.write(x) },
    { name: 'resource-patch', matches: (i) => ResourceWrites.owns(i) && i.kind === 'patch', handle: (x) => h.resources.patch(x) },
    { name: 'binary-write', matches: binary('create', 'update'), handle: (x) => h.binaryWrites.write(x) },
    { name: 'binary-patch', matches: binary('patch'), handle: () => h.binaryWrites.patch() },
    { name: 'binary-delete', matches: binary('delete'), handle: (x) => h.binaryWrites.delete(x) },
    { name: 'binary-list', matches: binary('history', 'search'), handle: (x) => h.binaryReads.list(x) },
    { name: 'binary-read', matches: binary('read', 'vread'), handle: (x) => h.binaryReads.read(x) },
    { name: 'operation-body', matches: (i, req) => PassThroughRoutes.checksBody(i, req), handle: (x) => h.passThrough.operationBody(x) },
    { name: 'pass-through', matches: () => true, handle: (x) => h.passThrough.forward(x) },
  ];
}

/** The route for an interaction (the table ends with a catch-all). */
export function routeFor(routes: readonly Route[], i: Interaction, req: IncomingMessage): Route {
  for (const r of routes) if (r.matches(i, req)) return r;
  throw new Error('the route table has no catch-all');
}
