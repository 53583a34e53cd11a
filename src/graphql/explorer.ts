import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';

/**
 * The GraphiQL page (`graphql.explorer`, on in demo mode): a browser at the API's path gets an
 * editor to try queries, its requests sent to the same path with the token the user pastes into
 * the headers pane. Static: it carries no data and needs no token itself. GraphiQL comes from
 * unpkg, pinned, under a CSP that lets nothing else run.
 */
const SCRIPTS = [
  'https://unpkg.com/react@18.3.1/umd/react.production.min.js',
  'https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js',
  'https://unpkg.com/graphiql@3.8.3/graphiql.min.js',
];
const STYLE = 'https://unpkg.com/graphiql@3.8.3/graphiql.min.css';

export function sendExplorer(res: ServerResponse, path: string, requestId: string): void {
  const nonce = randomBytes(16).toString('base64');
  const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fhir-binary-gateway — files GraphQL API</title>
<link rel="stylesheet" href="${STYLE}">
<style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
${SCRIPTS.map((src) => `<script src="${src}" crossorigin></script>`).join('\n')}
<script nonce="${nonce}">
const fetcher = GraphiQL.createFetcher({ url: ${JSON.stringify(path)} });
ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, {
  fetcher,
  defaultHeaders: '{\\n  "Authorization": "Bearer <the token the gateway printed>"\\n}',
  defaultQuery: '# Upload a file with curl (docs/graphql.md), then ask about it here:\\nquery { file(fileId: "<fileId>") { state size contentType hashSha256 forEntity } }\\n',
}));
</script>
</body>
</html>
`;
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(page),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-request-id': requestId,
    // Only these exact files from unpkg (not the whole of npm it serves), the inline script by its nonce.
    'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}' ${SCRIPTS.join(' ')}; style-src 'unsafe-inline' ${STYLE}; connect-src 'self'; img-src data:; font-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    'referrer-policy': 'no-referrer',
  });
  res.end(page);
}
