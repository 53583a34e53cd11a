import type { GraphQLScalarType } from 'graphql';
import { buildSchema, GraphQLError, valueFromASTUntyped, type GraphQLSchema } from 'graphql';

/**
 * The files API of seed 000 (docs/graphql.md publishes this SDL; test/graphql/schema.test.ts keeps
 * the two equal). Sizes are Float: GraphQL's Int is 32 bits, and files pass 2 GiB.
 */
export const SDL = `"""A file part of a GraphQL multipart request (https://github.com/jaydenseric/graphql-multipart-request-spec)."""
scalar Upload

"""A FHIR resource as JSON: a GraphQL object literal or a variable, with FHIR's own shape (lists as lists)."""
scalar JSON

enum Encryption {
  """Stored encrypted at rest with AES-256 (the store's encryption; refused where there is none)."""
  AES256
}

input FileSecurity {
  encryption: Encryption
  """How long the returned URL lives, e.g. 15m (at most signedUrls.maxWindow)."""
  accessWindow: String
  """The client address or range the URL is for (one: a URL carries one range)."""
  allowedIps: [String!]
}

type UploadedFile {
  fileId: ID!
  """A signed URL for the file (null when signed URLs are off)."""
  url: String
  """What names the file in a resource written through this API (attachment url)."""
  storagePath: String!
  """The URL's query: its signature and constraints (the seed's SAS token)."""
  sasToken: String
  expiresAt: String
  hashSha256: String!
  size: Float!
  contentType: String!
}

enum FileState {
  PENDING
  LINKED
  UNLINKED
  QUARANTINED
}

type FileInfo {
  fileId: ID!
  size: Float!
  contentType: String!
  hashSha256: String!
  purpose: String
  state: FileState!
  """The entity it was uploaded for, e.g. Patient/123."""
  forEntity: String
  """The resource that holds it, once bound."""
  linkedTo: String
  createdAt: String!
}

type FileUrl {
  url: String!
  sasToken: String!
  expiresAt: String!
}

type Meta {
  versionId: String
  lastUpdated: String
}

type Attachment {
  contentType: String
  size: Float
  """R4's base64 SHA-1 of the content."""
  hash: String
  title: String
  """The gateway's link to the content ($binary-access-read)."""
  url: String
  creation: String
}

type DocumentReferenceContent {
  attachment: Attachment!
}

type CreatedDocumentReference {
  id: ID!
  meta: Meta!
  content: [DocumentReferenceContent!]!
  """The Provenance written with it, in the same transaction."""
  provenance: ID
  """The resource as written (attachment links in place of file references)."""
  resource: JSON!
}

type CreatedMedia {
  id: ID!
  meta: Meta!
  content: Attachment!
  height: Int
  width: Int
  frames: Int
  duration: Float
  provenance: ID
  resource: JSON!
}

type Query {
  """A file this caller uploaded (another caller's file is null, as a missing one is)."""
  file(fileId: ID!): FileInfo
}

"""
Each field may be null: a refused one is null with its error, and the fields before it keep
their answers (a file already stored is never left without its id).
"""
type Mutation {
  uploadFile(
    forEntity: String!
    data: Upload!
    filename: String
    contentType: String!
    security: FileSecurity
    fileTypeOverride: String
  ): UploadedFile
  """A new signed URL for a file, the caller's right to read it checked again."""
  refreshFileUrl(fileId: ID!, accessWindow: String): FileUrl
  """A DocumentReference whose attachments name uploaded files, written with a Provenance in one transaction."""
  createDocumentReference(resource: JSON!): CreatedDocumentReference
  """A Media whose content names an uploaded file, written with a Provenance in one transaction."""
  createMedia(resource: JSON!): CreatedMedia
}
`;

/** A file part, named by its key in the request's `map`: taken from the request when a resolver asks for it. */
export class UploadRef {
  constructor(readonly key: string) {}
}

/** An Upload variable must be a file part the request's map placed there (api.ts). */
function uploadValue(v: unknown): UploadRef {
  if (v instanceof UploadRef) return v;
  throw new GraphQLError('an Upload is a file part of a multipart request (GraphQL multipart request spec)');
}

function uploadOutput(): never {
  throw new GraphQLError('an Upload is never sent back');
}

/** The schema with the Upload scalar's behaviour: built once. */
export function filesSchema(): GraphQLSchema {
  const schema = buildSchema(SDL);
  const upload = schema.getType('Upload') as GraphQLScalarType;
  // graphql 17 coerces through coerceInputValue/coerceInputLiteral/coerceOutputValue (the
  // parse*/serialize names are its deprecated aliases): both are set.
  const refuseLiteral = () => {
    throw new GraphQLError('an Upload is a file part of a multipart request, never a literal');
  };
  Object.assign(upload, {
    parseValue: uploadValue,
    coerceInputValue: uploadValue,
    parseLiteral: refuseLiteral,
    coerceInputLiteral: refuseLiteral,
    serialize: uploadOutput,
    coerceOutputValue: uploadOutput,
  });
  // JSON: any value, from a variable or an object literal in the document (its variables filled in).
  const literal = (ast: Parameters<typeof valueFromASTUntyped>[0], variables?: Parameters<typeof valueFromASTUntyped>[1]) =>
    valueFromASTUntyped(ast, variables);
  const same = (v: unknown) => v;
  Object.assign(schema.getType('JSON') as GraphQLScalarType, {
    parseValue: same,
    coerceInputValue: same,
    parseLiteral: literal,
    coerceInputLiteral: literal,
    serialize: same,
    coerceOutputValue: same,
  });
  return schema;
}
