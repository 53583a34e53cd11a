import { parse, type DocumentNode } from 'graphql';
import { GatewayError } from '../errors/catalogue.js';

/** Past this, a GraphQL document is not parsed: FHIR GraphQL reads are short. */
export const MAX_GRAPHQL_CHARS = 256 * 1024;

/**
 * FHIR `$graphql` (R4 graphql.html) reads through the query language, but a mutation writes
 * resources whose attachments arrive inside the query text, where no content check can see them
 * (issue 12: the same risk as PATCH). Until the GraphQL upload workflow checks them, only queries
 * are accepted: a document with a mutation or subscription is refused, and so is one that does
 * not parse (the upstream would read it some other way than we did). Parsed with graphql-js, the
 * reference implementation, so keywords inside strings and comments are not mistaken for operations.
 */
export function requireGraphqlQuery(document: string): void {
  if (document.length > MAX_GRAPHQL_CHARS)
    throw new GatewayError('PAYLOAD_TOO_LARGE', `a GraphQL document may not exceed ${MAX_GRAPHQL_CHARS} characters`);
  let parsed: DocumentNode;
  try {
    parsed = parse(document, { noLocation: true, maxTokens: 50_000 });
  } catch {
    throw new GatewayError('BAD_REQUEST', 'the GraphQL document does not parse');
  }
  for (const d of parsed.definitions) {
    if (d.kind === 'OperationDefinition' && d.operation !== 'query') {
      throw new GatewayError(
        'GRAPHQL_MUTATION',
        `the document has a ${d.operation}: write resources with the REST interactions, where their content is checked`,
      );
    }
  }
}
