#!/usr/bin/env node
// The naive baseline of bench/rewrite.mjs: the externalizing the gateway does, done the simple
// way. Buffers the whole body, JSON.parse, then for every attachment with data: base64-decode,
// SHA-256 + SHA-1, write the blob to disk, replace data by size/hash/reference; JSON.stringify
// the rest and POST it to the upstream; answer with the upstream's status and body.
// Usage: naive-externalize.mjs PORT UPSTREAM_URL BLOB_DIR
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';

const [port, upstream, blobDir] = process.argv.slice(2);
mkdirSync(blobDir, { recursive: true });

function externalize(node) {
  if (Array.isArray(node)) return node.forEach(externalize);
  if (!node || typeof node !== 'object') return;
  if (typeof node.data === 'string' && node.contentType) {
    const bytes = Buffer.from(node.data, 'base64');
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const sha1 = createHash('sha1').update(bytes).digest('base64');
    const id = randomUUID();
    writeFileSync(join(blobDir, id), bytes);
    delete node.data;
    node.size = bytes.length;
    node.hash = sha1;
    node._data = {
      extension: [
        {
          url: 'urn:naive-blob',
          extension: [
            { url: 'id', valueString: id },
            { url: 'sha256', valueString: sha256 },
          ],
        },
      ],
    };
  }
  for (const v of Object.values(node)) externalize(v);
}

http
  .createServer(async (req, res) => {
    if (req.method !== 'POST') return res.end('ready');
    const parts = [];
    for await (const c of req) parts.push(c);
    const resource = JSON.parse(Buffer.concat(parts).toString('utf8'));
    externalize(resource);
    const up = await fetch(`${upstream}${req.url.replace(/^\/fhir/, '')}`, {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify(resource),
    });
    res.writeHead(up.status, { 'content-type': 'application/fhir+json' });
    res.end(Buffer.from(await up.arrayBuffer()));
  })
  .listen(Number(port), '127.0.0.1');
