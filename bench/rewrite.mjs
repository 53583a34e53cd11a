#!/usr/bin/env node
// The rewrite engine, in one run (issue 4).
//
// A. Externalize: a DocumentReference with a 256 MiB inline PDF attachment (a ~341 MiB JSON body)
//    POSTed through the gateway (filesystem store, Medplum's router upstream), beside the naive
//    baseline (bench/servers/naive-externalize.mjs: buffer, JSON.parse, decode, SHA-256 + SHA-1,
//    write, JSON.stringify, POST). Peak RSS of each server and wall time of each request, rounds
//    alternated; both servers on CPU 1, curl and the upstream on CPU 0.
// B. Inflate: 50 DocumentReferences with 1 MiB attachments, written through the gateway; the
//    upstream's search Bundle (references only) inflated to a 10 MiB budget by the engine
//    (in this process, over the gateway's store), beside JSON.parse + JSON.stringify of the same
//    inflated Bundle. Medians of many repetitions; also end to end through the gateway.
//
// Env: BENCH_MIB (default 256), BENCH_ROUNDS (default 3), BENCH_REPS (default 15).
import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createRun, median, mintToken, root, rotate, startGateway, waitFor, writeGatewayConf, writeOut } from './lib.mjs';

const MiB = 1024 * 1024;
const SIZE = Number(process.env.BENCH_MIB ?? 256) * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const REPS = Number(process.env.BENCH_REPS ?? 15);
const PORTS = { upstream: 18290, gateway: 18291, naive: 18292 };
const GOALS = { rssMiB: 128, timeRatio: 0.6, inflateRatio: 1.3 };

const run = createRun('fbg-bench-rewrite-');
const { work, start } = run;

const peakRssMiB = (pid) => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const resetPeakRss = (pid) => writeFileSync(`/proc/${pid}/clear_refs`, '5');

/** curl on CPU 0, streaming the file up (`-T`; `--data-binary @` would load it whole); status and seconds. */
function post(url, file, token) {
  const out = execFileSync(
    'taskset',
    [
      '-c',
      '0',
      'bash',
      '-c',
      `curl -sS -X POST -o /dev/null -w '%{http_code} %{time_total}' -H 'Content-Type: application/fhir+json' ${token ? '-H "Authorization: Bearer $TOKEN"' : ''} -T '${file}' '${url}'`,
    ],
    {
      encoding: 'utf8',
      env: { ...process.env, TOKEN: token ?? '' },
    },
  );
  const [status, seconds] = out.trim().split(' ');
  if (status !== '201') throw new Error(`POST ${url}: HTTP ${status}`);
  return Number(seconds);
}

/** The DocumentReference body: `size` bytes of PDF-signed random content, base64, written in pieces. */
async function writeBody(file, size) {
  const out = createWriteStream(file);
  out.write(
    '{"resourceType":"DocumentReference","status":"current","description":"bench","content":[{"attachment":{"contentType":"application/pdf","title":"scan.pdf","data":"',
  );
  const head = Buffer.from('%PDF-1.4\n');
  const piece = 3 * 349_525;
  let left = size - head.length;
  out.write(head.toString('base64'));
  while (left > 0) {
    const n = Math.min(piece, left);
    if (!out.write(randomBytes(n).toString('base64'))) await once(out, 'drain');
    left -= n;
  }
  out.end('"}}]}');
  await once(out, 'finish');
}

/** Removes the blobs a round wrote: files only, the store keeps its directory layout. */
function clearDir(dir) {
  for (const name of readdirSync(dir, { recursive: true })) {
    const path = join(dir, name);
    if (statSync(path).isFile()) rmSync(path, { force: true });
  }
}

try {
  const upstream = `http://127.0.0.1:${PORTS.upstream}/fhir`;
  start('node', ['--experimental-websocket', join(root, 'dist/demo/fhir-upstream-main.js')], {
    cpu: '0',
    env: { FHIR_UPSTREAM_PORT: String(PORTS.upstream) },
  });
  const { jwksFile, token } = mintToken(work, 'user/*.cruds');
  const blobs = join(work, 'blobs');
  const naiveBlobs = join(work, 'naive-blobs');
  mkdirSync(blobs, { recursive: true });
  const extra = `storage:
  driver: filesystem
  filesystem:
    directory: ${blobs}
inflate: { maxBytesPerResponse: ${10 * MiB} }
`;
  const gateway = startGateway(
    run,
    writeGatewayConf(work, 'gateway.yaml', { port: PORTS.gateway, upstream, jwksFile, maxRequestBytes: 2 * SIZE, extra }),
  );
  const naive = start('node', [join(root, 'bench/servers/naive-externalize.mjs'), String(PORTS.naive), upstream, naiveBlobs], { cpu: '1' });
  const gw = `http://127.0.0.1:${PORTS.gateway}/fhir`;
  await waitFor(`${upstream}/metadata`);
  await waitFor(`${gw}/metadata`, { authorization: `Bearer ${token}` });
  await waitFor(`http://127.0.0.1:${PORTS.naive}/`);

  // ---- A. externalize ----
  const body = join(work, 'body.json');
  await writeBody(body, SIZE);
  const targets = {
    gateway: { url: `${gw}/DocumentReference`, pid: gateway.pid, token, dir: blobs, times: [], rss: [] },
    naive: {
      url: `http://127.0.0.1:${PORTS.naive}/fhir/DocumentReference`,
      pid: naive.pid,
      token: undefined,
      dir: naiveBlobs,
      times: [],
      rss: [],
    },
  };
  // Warm-up, small: JIT, token cache, the upstream's first writes.
  const small = join(work, 'small.json');
  await writeBody(small, 4 * MiB);
  for (const t of Object.values(targets)) post(t.url, small, t.token);
  for (let r = 0; r < ROUNDS; r++) {
    for (const name of rotate(Object.keys(targets), r)) {
      const t = targets[name];
      resetPeakRss(t.pid);
      t.times.push(post(t.url, body, t.token));
      t.rss.push(peakRssMiB(t.pid));
      clearDir(t.dir);
      console.error(`round ${r + 1} ${name}: ${t.times.at(-1).toFixed(2)} s, peak RSS ${t.rss.at(-1).toFixed(0)} MiB`);
    }
  }
  rmSync(body);
  const a = Object.fromEntries(
    Object.entries(targets).map(([k, t]) => [k, { seconds: median(t.times), peakRssMiB: median(t.rss), times: t.times, rss: t.rss }]),
  );
  const timeRatio = a.gateway.seconds / a.naive.seconds;

  // ---- B. inflate ----
  const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(MiB - 9)]);
  const doc = JSON.stringify({
    resourceType: 'DocumentReference',
    status: 'current',
    content: [{ attachment: { contentType: 'application/pdf', data: pdf.toString('base64') } }],
  });
  for (let i = 0; i < 50; i++) {
    // Once on a fresh connection: the pooled keep-alive one may have been closed by the server
    // while part A ran (an idle timeout), which fetch only finds out as EPIPE on reuse.
    const create = () =>
      fetch(`${gw}/DocumentReference?_inflate=false`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
        body: doc,
      });
    const r = await create().catch(create);
    if (r.status !== 201) throw new Error(`create: HTTP ${r.status} ${await r.text()}`);
    await r.arrayBuffer();
  }
  const held = Buffer.from(await (await fetch(`${upstream}/DocumentReference?_count=50`)).arrayBuffer());
  const { Inflater } = await import(join(root, 'dist/rewrite/inflate.js'));
  const { FilesystemBlobStore } = await import(join(root, 'dist/storage/filesystem.js'));
  const store = new FilesystemBlobStore({ directory: blobs });
  const spool = join(work, 'spool');
  mkdirSync(spool);
  /**
   * The engine over the upstream's Bundle. `keep`: its output joined into one string (as the
   * baseline's JSON.stringify makes one); otherwise it goes to a sink that only counts, as it goes
   * to a socket when the gateway serves it.
   */
  const inflate = async (keep) => {
    const inf = new Inflater({
      store,
      maxBytes: 10 * MiB,
      inflate: true,
      owners: 'entries',
      spoolDir: spool,
      link: (o, p) => `${gw}/${o}/$binary-access-read?path=${p}`,
      publicUrl: (u) => u,
    });
    const parts = [];
    let n = 0;
    await pipeline(
      Readable.from([held]),
      (src) => inf.run(src),
      async function* (src) {
        for await (const c of src) {
          n += c.length;
          if (keep) parts.push(c);
        }
      },
    );
    return { text: keep ? parts.join('') : undefined, chars: n, report: inf.report };
  };
  const { text: inflated, report } = await inflate(true);
  if (report.inflated < 5 || report.bytes > 10 * MiB) throw new Error(`unexpected inflation: ${JSON.stringify(report)}`);
  const ms = { engine: [], engineJoined: [], json: [] };
  for (let i = 0; i < REPS; i++) {
    for (const which of rotate(Object.keys(ms), i)) {
      const t0 = performance.now();
      if (which === 'json') JSON.stringify(JSON.parse(inflated));
      else await inflate(which === 'engineJoined');
      ms[which].push(performance.now() - t0);
    }
  }
  const e2e = { gateway: [], upstream: [] };
  for (let i = 0; i < REPS; i++) {
    for (const which of rotate(['gateway', 'upstream'], i)) {
      const t0 = performance.now();
      const r = await fetch(which === 'gateway' ? `${gw}/DocumentReference?_count=50` : `${upstream}/DocumentReference?_count=50`, {
        headers: { authorization: `Bearer ${token}` },
      });
      await r.arrayBuffer();
      e2e[which].push(performance.now() - t0);
    }
  }
  const b = {
    bundleBytes: held.length,
    inflatedBytes: Buffer.byteLength(inflated),
    report,
    engineMs: median(ms.engine),
    engineJoinedMs: median(ms.engineJoined),
    jsonParseStringifyMs: median(ms.json),
    ratio: median(ms.engine) / median(ms.json),
    ratioJoined: median(ms.engineJoined) / median(ms.json),
    endToEnd: { gatewayMs: median(e2e.gateway), upstreamDirectMs: median(e2e.upstream) },
  };

  const result = {
    date: new Date().toISOString(),
    sizeMiB: SIZE / MiB,
    rounds: ROUNDS,
    externalize: a,
    timeRatio,
    inflate: b,
    goals: GOALS,
  };
  writeOut('rewrite.json', result);
  console.log(`\nA. externalize a ${SIZE / MiB} MiB attachment (${ROUNDS} rounds, medians)`);
  console.log('| target | seconds | peak RSS MiB | per round (s / MiB) |\n|---|---:|---:|---|');
  for (const [k, v] of Object.entries(a))
    console.log(
      `| ${k} | ${v.seconds.toFixed(2)} | ${v.peakRssMiB.toFixed(0)} | ${v.times.map((s, i) => `${s.toFixed(2)} / ${v.rss[i].toFixed(0)}`).join(', ')} |`,
    );
  console.log(
    `gateway/naive time: ${timeRatio.toFixed(2)}× (goal ≤ ${GOALS.timeRatio}); gateway peak RSS ${a.gateway.peakRssMiB.toFixed(0)} MiB (goal ≤ ${GOALS.rssMiB})`,
  );
  console.log(`\nB. inflate a 50-entry search Bundle of 1 MiB attachments to a 10 MiB budget (${REPS} reps, medians)`);
  console.log(
    `engine to a streaming sink ${b.engineMs.toFixed(1)} ms vs JSON.parse+stringify of the inflated Bundle ${b.jsonParseStringifyMs.toFixed(1)} ms: ${b.ratio.toFixed(2)}× (goal ≤ ${GOALS.inflateRatio}); ${report.inflated} inflated, ${report.linked} linked, ${(b.inflatedBytes / MiB).toFixed(1)} MiB out`,
  );
  console.log(
    `engine with its output joined into one string (as stringify makes one): ${b.engineJoinedMs.toFixed(1)} ms, ${b.ratioJoined.toFixed(2)}×`,
  );
  console.log(
    `end to end: gateway ${b.endToEnd.gatewayMs.toFixed(1)} ms, upstream direct (references only) ${b.endToEnd.upstreamDirectMs.toFixed(1)} ms`,
  );
} finally {
  await run.close();
}
