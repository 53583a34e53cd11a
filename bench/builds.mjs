#!/usr/bin/env node
// This build against a previous one, in one run: the measured paths of the other benches
// (small reads through the pass-through, raw Binary up and down, externalize and inflate), each
// build in its own process on the same core, taking turns, so both meet the same minute of the
// shared machine. Prints each build's numbers, each against its baseline where the bench has one
// (the bare http-proxy for reads), and this build / previous build.
//
// Env: BENCH_PREVIOUS (required): a checkout of the previous build, with its dist/ built and its
//      node_modules installed (`make bench-builds PREVIOUS=<rev>` makes one);
//      BENCH_PAIRS (default 12), BENCH_PAIR_DURATION (default 3s), BENCH_BINARY_MIB (default 256),
//      BENCH_REWRITE_MIB (default 64), BENCH_ROUNDS (default 5).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchDir, createRun, median, mintToken, root, waitFor, writeGatewayConf, writeOut } from './lib.mjs';

const MiB = 1024 * 1024;
const PREVIOUS = process.env.BENCH_PREVIOUS;
if (!PREVIOUS) throw new Error('BENCH_PREVIOUS: the directory of the previous build (make bench-builds PREVIOUS=<rev>)');
const PAIRS = Number(process.env.BENCH_PAIRS ?? 12);
const PAIR_DURATION = process.env.BENCH_PAIR_DURATION ?? '3s';
const BINARY = Number(process.env.BENCH_BINARY_MIB ?? 256) * MiB;
const REWRITE = Number(process.env.BENCH_REWRITE_MIB ?? 64) * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SEARCHES = 10;
const PORTS = { static: 18380, fhir: 18381, bare: 18382, current: 18383, previous: 18384 };

const run = createRun('fbg-bench-builds-');
const { work, start } = run;

const statField = (pid, re) => Number(re.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const peakRssMiB = (pid) => statField(pid, /VmHWM:\s+(\d+) kB/);
const resetPeakRss = (pid) => writeFileSync(`/proc/${pid}/clear_refs`, '5');
/** CPU seconds (user + system) a process has used, from /proc (clock ticks, 100 per second). */
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** A shell command on CPU 0 (the client's core); the token travels in the environment. */
function client(script, token) {
  return execFileSync('taskset', ['-c', '0', 'bash', '-o', 'pipefail', '-c', script], {
    encoding: 'utf8',
    env: { ...process.env, TOKEN: token ?? '' },
    maxBuffer: 1 << 20,
  }).trim();
}

function wrk(url, token) {
  const out = client(`wrk -t1 -c64 -d${PAIR_DURATION} -H "Authorization: Bearer $TOKEN" '${url}'`, token);
  if (/Non-2xx or 3xx responses/.test(out)) throw new Error(`${url}: non-2xx responses`);
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]), requests: Number(/(\d+) requests in/.exec(out)[1]) };
}

/** One curl exchange; seconds from connect to last byte. */
function curl(method, url, token, { upload, type, expect }) {
  const up = upload ? `-H 'Content-Type: ${type}' -T '${upload}'` : '';
  const out = client(
    `curl -sS -X ${method} -o /dev/null -w '%{http_code} %{time_total} %header{location}' -H "Authorization: Bearer $TOKEN" ${up} '${url}'`,
    token,
  );
  const [status, seconds, location = ''] = out.split(' ');
  if (status !== String(expect)) throw new Error(`${method} ${url}: HTTP ${status}`);
  return { seconds: Number(seconds), location };
}

/** `bytes` of PDF-signed random content, and the same as a DocumentReference with it inline. */
async function writeFiles(dir, bytes) {
  const raw = join(dir, 'content.pdf');
  const doc = join(dir, 'doc.json');
  const head = Buffer.from('%PDF-1.4\n');
  const rawOut = createWriteStream(raw);
  const docOut = createWriteStream(doc);
  docOut.write('{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"contentType":"application/pdf","data":"');
  let carry = Buffer.alloc(0);
  for (let left = bytes, first = true; left > 0; first = false) {
    const n = Math.min(3 * 349_525, left);
    const piece = first ? Buffer.concat([head, randomBytes(n - head.length)]) : randomBytes(n);
    left -= n;
    const all = Buffer.concat([carry, piece]);
    const whole = left > 0 ? all.length - (all.length % 3) : all.length;
    carry = all.subarray(whole);
    if (!rawOut.write(piece)) await once(rawOut, 'drain');
    if (!docOut.write(all.subarray(0, whole).toString('base64'))) await once(docOut, 'drain');
  }
  docOut.end('"}}]}');
  rawOut.end();
  await Promise.all([once(docOut, 'finish'), once(rawOut, 'finish')]);
  return { raw, doc };
}

/** A new directory in the run's work directory. */
function dirIn(work, name) {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

const ratio = (a, b) => (a / b).toFixed(2);

try {
  const staticUp = `http://127.0.0.1:${PORTS.static}`;
  const fhir = `http://127.0.0.1:${PORTS.fhir}/fhir`;
  start('node', [join(benchDir, 'servers/static-upstream.mjs')], { cpu: '0', env: { PORT: String(PORTS.static) } });
  start('node', ['--experimental-websocket', join(root, 'dist/demo/fhir-upstream-main.js')], {
    cpu: '0',
    env: { FHIR_UPSTREAM_PORT: String(PORTS.fhir) },
  });
  const bare = start('node', [join(benchDir, 'servers/bare-proxy.mjs')], { env: { PORT: String(PORTS.bare), TARGET: staticUp } });
  const { jwksFile, token } = mintToken(work, 'user/*.cruds');

  // Each build serves both upstreams: reads of the canned Patient (`/static`), and a real FHIR
  // server (`/fhir`) for writes. Two gateways per build would double the processes on CPU 1 for
  // nothing: one policy, two upstream aliases is not possible, so reads go through a second pair.
  const builds = {};
  for (const [name, dir] of [
    ['current', root],
    ['previous', PREVIOUS],
  ]) {
    const port = PORTS[name];
    const blobs = join(work, `blobs-${name}`);
    mkdirSync(blobs, { recursive: true });
    const extra = `storage: { driver: filesystem, filesystem: { directory: ${blobs} } }
inflate: { maxBytesPerResponse: ${10 * MiB} }
content: { allowedTypes: { Binary: [application/pdf], DocumentReference: [application/pdf] } }
`;
    const conf = writeGatewayConf(work, `${name}.yaml`, {
      port,
      upstream: fhir,
      jwksFile,
      maxRequestBytes: 4 * REWRITE + 4 * BINARY,
      extra,
    });
    const readConf = writeGatewayConf(work, `${name}-reads.yaml`, { port: port + 10, upstream: `${staticUp}/fhir`, jwksFile });
    const proc = start('node', [join(dir, 'bin/fhir-binary-gateway.js'), '--config', conf]);
    const reads = start('node', [join(dir, 'bin/fhir-binary-gateway.js'), '--config', readConf]);
    builds[name] = {
      dir,
      base: `http://127.0.0.1:${port}/fhir`,
      reads: `http://127.0.0.1:${port + 10}/fhir`,
      pid: proc.pid,
      readsPid: reads.pid,
      blobs,
    };
  }
  await waitFor(`${fhir}/metadata`);
  for (const b of Object.values(builds)) {
    await waitFor(`${b.base}/metadata`, { authorization: `Bearer ${token}` });
    await waitFor(`${b.reads}/Patient/example`, { authorization: `Bearer ${token}` });
  }
  const names = ['previous', 'current'];
  const turn = (i) => (i % 2 ? [...names].reverse() : names);
  const lines = [`Run: ${new Date().toISOString()}, node ${process.version}, previous build: ${PREVIOUS}`, ''];

  // ---- A. small reads: bare proxy, previous, current in turn; req/s and CPU per request ----
  const readTargets = {
    bare: { url: `http://127.0.0.1:${PORTS.bare}/fhir/Patient/example`, pid: bare.pid },
    previous: { url: `${builds.previous.reads}/Patient/example`, pid: builds.previous.readsPid },
    current: { url: `${builds.current.reads}/Patient/example`, pid: builds.current.readsPid },
  };
  for (const t of Object.values(readTargets)) wrk(t.url, token); // warm-up: JIT, pools, token cache
  const pairs = { previous: [], current: [], currentOverPrevious: [] };
  const cpu = { previous: [], current: [], currentOverPrevious: [] };
  for (let i = 0; i < PAIRS; i++) {
    const got = {};
    for (const k of ['bare', ...turn(i)]) {
      const c0 = cpuSeconds(readTargets[k].pid);
      const w = wrk(readTargets[k].url, token);
      got[k] = { rps: w.rps, cpu: (cpuSeconds(readTargets[k].pid) - c0) / w.requests };
    }
    for (const k of names) {
      pairs[k].push(got[k].rps / got.bare.rps);
      cpu[k].push(got.bare.cpu / got[k].cpu);
    }
    pairs.currentOverPrevious.push(got.current.rps / got.previous.rps);
    cpu.currentOverPrevious.push(got.previous.cpu / got.current.cpu);
  }
  lines.push(
    `### Small reads (JWT + SMART, access log off): ${PAIRS} rounds of ${PAIR_DURATION}, bare proxy then both builds in turn`,
    '',
    '| | paired, / bare http-proxy | at equal CPU, / bare http-proxy |',
    '|---|---:|---:|',
    `| previous build | ${median(pairs.previous).toFixed(2)}× | ${median(cpu.previous).toFixed(2)}× |`,
    `| this build | ${median(pairs.current).toFixed(2)}× | ${median(cpu.current).toFixed(2)}× |`,
    `| this / previous | ${median(pairs.currentOverPrevious).toFixed(2)}× | ${median(cpu.currentOverPrevious).toFixed(2)}× |`,
    '',
    `Per round, this / previous (req/s): ${pairs.currentOverPrevious.map((r) => r.toFixed(2)).join(', ')}`,
    '',
  );

  // ---- B. raw Binary up and down; C. externalize a DocumentReference; D. inflate a search ----
  const files = await writeFiles(work, BINARY);
  const rewriteFiles = REWRITE === BINARY ? files : await writeFiles(dirIn(work, 'rewrite'), REWRITE);
  const measures = {};
  for (const k of names) measures[k] = { up: [], down: [], upRss: [], downRss: [], ext: [], extRss: [], inflate: [] };
  // Warm-up, and for D each build's own 20 DocumentReferences with 256 KiB attachments (a build
  // inflates only the blobs in its own store: it searches for its own).
  const small = await writeFiles(dirIn(work, 'small'), 256 * 1024);
  for (const k of names) {
    const b = builds[k];
    curl('POST', `${b.base}/Binary`, token, { upload: small.raw, type: 'application/pdf', expect: 201 });
    const ids = [];
    for (let i = 0; i < 20; i++) {
      const { location } = curl('POST', `${b.base}/DocumentReference`, token, {
        upload: small.doc,
        type: 'application/fhir+json',
        expect: 201,
      });
      ids.push(/\/DocumentReference\/([^/]+)/.exec(location)[1]);
    }
    b.search = `${b.base}/DocumentReference?_id=${ids.join(',')}&_inflate=${4 * MiB}`;
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const k of turn(r)) {
      const b = builds[k];
      const m = measures[k];
      resetPeakRss(b.pid);
      const up = curl('POST', `${b.base}/Binary`, token, { upload: files.raw, type: 'application/pdf', expect: 201 });
      m.up.push(BINARY / MiB / up.seconds);
      m.upRss.push(peakRssMiB(b.pid));
      const id = /\/Binary\/([^/]+)/.exec(up.location)[1];
      resetPeakRss(b.pid);
      m.down.push(BINARY / MiB / curl('GET', `${b.base}/Binary/${id}`, token, { expect: 200 }).seconds);
      m.downRss.push(peakRssMiB(b.pid));
      resetPeakRss(b.pid);
      m.ext.push(
        curl('POST', `${b.base}/DocumentReference`, token, { upload: rewriteFiles.doc, type: 'application/fhir+json', expect: 201 })
          .seconds,
      );
      m.extRss.push(peakRssMiB(b.pid));
      // One search takes tens of milliseconds, less than the machine's jitter: the round's figure is ten of them.
      let inflate = 0;
      for (let s = 0; s < SEARCHES; s++) inflate += curl('GET', b.search, token, { expect: 200 }).seconds;
      m.inflate.push(inflate);
    }
  }
  const med = (k, f) => median(measures[k][f]);
  const row = (label, f, unit, higherIsBetter, d = 0) =>
    `| ${label} | ${med('previous', f).toFixed(d)} ${unit} | ${med('current', f).toFixed(d)} ${unit} | ${higherIsBetter ? ratio(med('current', f), med('previous', f)) : ratio(med('previous', f), med('current', f))}× |`;
  lines.push(
    `### Binary and rewrite: ${ROUNDS} rounds, builds in turn (medians)`,
    '',
    '| path | previous build | this build | this / previous (>1 is better) |',
    '|---|---:|---:|---:|',
    row(`raw Binary upload, ${BINARY / MiB} MiB`, 'up', 'MiB/s', true, 1),
    row(`raw Binary download, ${BINARY / MiB} MiB`, 'down', 'MiB/s', true, 1),
    row('  peak RSS during the upload', 'upRss', 'MiB', false),
    row('  peak RSS during the download', 'downRss', 'MiB', false),
    row(`externalize a DocumentReference with ${REWRITE / MiB} MiB inline`, 'ext', 's', false, 2),
    row('  peak RSS while externalizing', 'extRss', 'MiB', false),
    row(`${SEARCHES} searches of 20 DocumentReferences inflated (4 MiB budget each)`, 'inflate', 's', false, 2),
    '',
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  writeOut('builds.json', { pairs, cpu, measures, previous: PREVIOUS });
} finally {
  await run.close();
}
