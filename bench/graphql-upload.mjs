#!/usr/bin/env node
// Issue 16: a large file uploaded over GraphQL (uploadFile, the GraphQL multipart request spec)
// beside the same file uploaded over REST (POST /fhir/Binary), in one run: MiB/s of each, and the
// gateway's peak RSS while it streams the file into the store (goal: ≤ 150 MiB at 1 GiB, so the
// multipart path holds no file in memory). One gateway serves both paths (CPU 1); curl and the
// FHIR upstream get CPU 0. Rounds alternate the order of the two paths (drift cancels).
//
// Env: BENCH_SIZES (default "64M,1G"), BENCH_ROUNDS (default 3).
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  benchSizes,
  client,
  createRun,
  median,
  MiB,
  mintToken,
  peakRssMiB,
  resetPeakRss,
  root,
  startGateway,
  waitFor,
  writeGatewayConf,
  writeOut,
} from './lib.mjs';

const SIZES = benchSizes('64M,1G');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const RSS_GOAL_MIB = 150;
const PORTS = { upstream: 18290, gateway: 18291 };

const run = createRun('fbg-bench-graphql-');
const { work, start } = run;
const fmt = (x, d = 0) => x.toFixed(d);

/** REST: the raw content as the body (curl -T streams it from the file). MiB/s over the whole exchange. */
function rest(base, token, file, bytes) {
  const out = client(
    `curl -sS -o /dev/null -w '%{http_code} %{time_total}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/octet-stream' -T '${file}' -X POST '${base}/Binary'`,
    { TOKEN: token },
  );
  const [status, seconds] = out.split(' ');
  if (status !== '201') throw new Error(`REST upload: HTTP ${status}`);
  return bytes / MiB / Number(seconds);
}

/** GraphQL: operations, map, then the file part (curl -F streams the file from disk). */
function graphql(url, token, file, bytes, operations) {
  const out = client(
    `curl -sS -o ${join(work, 'gql-answer.json')} -w '%{http_code} %{time_total}' -H "Authorization: Bearer $TOKEN" -H 'GraphQL-Require-Preflight: 1' -F "operations=$OPS" -F 'map={"0":["variables.file"]}' -F '0=@${file};type=application/octet-stream' '${url}'`,
    { TOKEN: token, OPS: operations },
  );
  const [status, seconds] = out.split(' ');
  const answer = JSON.parse(readFileSync(join(work, 'gql-answer.json'), 'utf8'));
  if (status !== '200' || !answer.data?.uploadFile)
    throw new Error(`GraphQL upload: HTTP ${status} ${JSON.stringify(answer).slice(0, 300)}`);
  return { mibps: bytes / MiB / Number(seconds), fileId: answer.data.uploadFile.fileId, sha256: answer.data.uploadFile.hashSha256 };
}

try {
  const largest = Math.max(...SIZES.map((s) => s.bytes));
  const s = statfsSync(work);
  if (s.bavail * s.bsize < largest * 4 + 256 * MiB) throw new Error('not enough free disk: set BENCH_SIZES smaller');
  const upstream = `http://127.0.0.1:${PORTS.upstream}/fhir`;
  start('node', ['--experimental-websocket', join(root, 'dist/demo/fhir-upstream-main.js')], {
    cpu: '0',
    env: { FHIR_UPSTREAM_PORT: String(PORTS.upstream) },
  });
  const { jwksFile, token } = mintToken(work, 'user/Binary.cruds user/DocumentReference.cruds files.write');
  const blobs = join(work, 'blobs');
  // Random bytes have no signature: declared application/octet-stream, which both allow-lists name.
  const extra = `content: { allowedTypes: { Binary: [application/octet-stream], DocumentReference: [application/octet-stream] } }
graphql: { enabled: true }
storage: { driver: filesystem, filesystem: { directory: ${blobs} } }
`;
  const gw = startGateway(
    run,
    writeGatewayConf(work, 'gateway.yaml', { port: PORTS.gateway, upstream, jwksFile, maxRequestBytes: largest + MiB, extra }),
  );
  const base = `http://127.0.0.1:${PORTS.gateway}/fhir`;
  const gqlUrl = `http://127.0.0.1:${PORTS.gateway}/graphql`;
  await waitFor(`${upstream}/metadata`);
  await waitFor(`${base}/metadata`);
  const cmdline = readFileSync(`/proc/${gw.pid}/cmdline`, 'utf8');
  if (!cmdline.includes('fhir-binary-gateway.js')) throw new Error(`pid ${gw.pid} is not the gateway`);
  const operations = JSON.stringify({
    query:
      'mutation($file: Upload!) { uploadFile(forEntity: "Patient/bench", data: $file, contentType: "application/octet-stream") { fileId hashSha256 } }',
    variables: { file: null },
  });

  const warm = join(work, 'warm.bin');
  writeFileSync(warm, randomBytes(4 * MiB));
  rest(base, token, warm, 4 * MiB);
  graphql(gqlUrl, token, warm, 4 * MiB, operations);

  const results = [];
  for (const size of SIZES) {
    const file = join(work, `src-${size.label}.bin`);
    client(`head -c ${size.bytes} /dev/urandom > '${file}'`);
    const sha256 = client(`sha256sum '${file}' | cut -d' ' -f1`);
    const rec = { size: size.label, rest: [], graphql: [], restPeakRssMiB: 0, graphqlPeakRssMiB: 0, sha256Match: true };
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? ['rest', 'graphql'] : ['graphql', 'rest'];
      for (const path of order) {
        resetPeakRss(gw.pid);
        if (path === 'rest') rec.rest.push(rest(base, token, file, size.bytes));
        else {
          const g = graphql(gqlUrl, token, file, size.bytes, operations);
          rec.graphql.push(g.mibps);
          rec.sha256Match &&= g.sha256 === sha256;
        }
        const peak = peakRssMiB(gw.pid);
        if (path === 'rest') rec.restPeakRssMiB = Math.max(rec.restPeakRssMiB, peak);
        else rec.graphqlPeakRssMiB = Math.max(rec.graphqlPeakRssMiB, peak);
        // Keep the disk from filling with 1 GiB copies: the bench never reads them back.
        rmSync(blobs, { recursive: true, force: true });
      }
    }
    rmSync(file, { force: true });
    rec.ratio = median(rec.graphql) / median(rec.rest);
    results.push(rec);
  }

  const lines = [
    `### GraphQL upload vs REST upload (${new Date().toISOString().slice(0, 16)}Z, ${ROUNDS} rounds, alternating order)`,
    '',
    '| size | REST MiB/s (median) | GraphQL MiB/s (median) | GraphQL / REST | peak RSS REST | peak RSS GraphQL | sha256 |',
    '|---|---|---|---|---|---|---|',
  ];
  let rssOk = true;
  for (const r of results) {
    rssOk &&= r.graphqlPeakRssMiB <= RSS_GOAL_MIB;
    lines.push(
      `| ${r.size} | ${fmt(median(r.rest))} | ${fmt(median(r.graphql))} | ${fmt(r.ratio, 2)}× | ${fmt(r.restPeakRssMiB)} MiB | ${fmt(r.graphqlPeakRssMiB)} MiB | ${r.sha256Match ? 'match' : 'MISMATCH'} |`,
    );
  }
  lines.push('', `- Goal: GraphQL upload peak RSS ≤ ${RSS_GOAL_MIB} MiB at every size: ${rssOk ? 'met' : 'NOT met'}`);
  writeOut('graphql-upload.json', results);
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await run.close();
}
