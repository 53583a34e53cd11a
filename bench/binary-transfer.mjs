#!/usr/bin/env node
// Large raw Binary content, in one run (issue 3): a random file goes up through the gateway
// (POST /fhir/Binary, filesystem store) and comes back (GET, raw), beside nginx accepting it (DAV
// PUT) and serving it (static file). Prints MiB/s per target, the gateway's peak RSS per size and
// phase, and checks that what comes back is byte-identical (sha256).
// Two cores are shared: curl and the FHIR upstream get CPU 0; the servers being compared (the
// gateway and nginx) both get CPU 1, one transfer at a time, so neither competes with curl.
//
// Env: BENCH_SIZES (default "64M,1G"; K/M/G are binary units), BENCH_ROUNDS (default 3),
//      BENCH_ENCRYPTED=0 to leave out the gateway with encryption at rest.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
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
  rotate,
  startGateway,
  waitFor,
  writeGatewayConf,
  writeNginxConf,
  writeOut,
} from './lib.mjs';

const SIZES = benchSizes('64M,1G');
const GiB = 1024 * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ENCRYPTED = process.env.BENCH_ENCRYPTED !== '0';
const RSS_GOAL_MIB = 150;
const DOWNLOAD_GOAL = 0.5;
const PORTS = { upstream: 18190, nginx: 18191, nginxNoSendfile: 18192, gateway: 18193, gatewayEncrypted: 18194 };
const SIGNED = 'gateway (signed URL)';
/** Issue 15: a signed URL's download within 5% of the bearer-token path's. */
const SIGNED_GOAL = 0.95;
const SIGNED_PAIRS = Number(process.env.BENCH_SIGNED_PAIRS ?? 10);
const BLOB_EXTENSION_URL = 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/blob-reference';

const run = createRun('fbg-bench-binary-');
const { work, start } = run;

/**
 * One transfer with curl, which streams both ways (`-T` reads the file as it sends, `-o` writes
 * as it receives; `--data-binary @file` would load it whole). Fails on an unexpected status;
 * returns the Location header and MiB/s over the whole exchange (curl's time_total: connect to
 * last byte, so an upload includes the gateway's fsync and its call to the FHIR upstream).
 */
function curl({ method, url, upload, token, bytes }) {
  const args = [`-sS -X ${method} -o /dev/null`, `-w '%{http_code} %{time_total} %header{location}'`];
  if (token) args.push('-H "Authorization: Bearer $TOKEN"');
  if (upload) args.push(`-H 'Content-Type: application/octet-stream' -T '${upload}'`);
  const out = client(`curl ${args.join(' ')} '${url}'`, { TOKEN: token ?? '' });
  const [status, seconds, location = ''] = out.split(' ');
  const ok = method === 'GET' ? status === '200' : status === '201' || status === '204';
  if (!ok) throw new Error(`${method} ${url}: HTTP ${status}`);
  return { mibps: bytes / MiB / Number(seconds), location };
}

const rssMiB = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
/**
 * CPU seconds (user + system) a process has used: on a shared, noisy machine the CPU a server
 * spends per GiB moves much less than its wall-clock rate, which the client's core also limits.
 * /proc/PID/stat fields 14 and 15, in clock ticks (100 per second).
 */
const cpuSeconds = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};

/** The blob the upstream's Binary points at: its id (to remove superseded copies) and the sha256 the gateway computed while storing. */
async function blobOf(upstream, binaryId) {
  const r = await fetch(`${upstream}/Binary/${binaryId}`, { headers: { accept: 'application/fhir+json' } });
  const ext = (await r.json())._data?.extension?.find((e) => e.url === BLOB_EXTENSION_URL)?.extension ?? [];
  const get = (name) => ext.find((e) => e.url === name)?.valueString;
  return { id: get('id'), sha256: get('sha256') };
}

/** Removes a blob the bench no longer reads, so that repeated 1 GiB uploads do not fill the disk (filesystem store layout, docs/binary.md). */
function removeBlob(dir, id) {
  for (const ext of ['blob', 'json']) rmSync(join(dir, id.slice(0, 2), id.slice(2, 4), `${id}.${ext}`), { force: true });
}

const fmt = (x, d = 0) => x.toFixed(d);

try {
  // Each size needs its source file, two blobs per gateway while an upload replaces the previous
  // one, and nginx's temp file plus its stored copy; sizes run one after another and clean up.
  const largest = Math.max(...SIZES.map((s) => s.bytes));
  const free = (() => {
    const s = statfsSync(work);
    return s.bavail * s.bsize;
  })();
  const needed = largest * (1 + (ENCRYPTED ? 4 : 2) + 2) + 256 * MiB;
  if (free < needed)
    throw new Error(`${(free / GiB).toFixed(1)} GiB free in ${work}, ${(needed / GiB).toFixed(1)} GiB needed: set BENCH_SIZES smaller`);

  const upstream = `http://127.0.0.1:${PORTS.upstream}/fhir`;
  start('node', ['--experimental-websocket', join(root, 'dist/demo/fhir-upstream-main.js')], {
    cpu: '0',
    env: { FHIR_UPSTREAM_PORT: String(PORTS.upstream) },
  });

  // nginx as usually deployed (Debian's nginx.conf turns sendfile on), and a second server with
  // sendfile off (copies through user space, as Node must); on this VM either can be the faster.
  // Uploads go to the DAV module: the body lands in a temp file, renamed into place (no fsync).
  const www = join(work, 'www');
  mkdirSync(join(www, 'static'), { recursive: true });
  const nginxServer = (port, sendfile) => `  server {
    listen 127.0.0.1:${port};
    root ${www};
    sendfile ${sendfile};
    tcp_nopush on;
    client_max_body_size 0;
    location /upload/ { dav_methods PUT; create_full_put_path on; }
  }`;
  const nginx = start('nginx', [
    '-c',
    writeNginxConf(work, `${nginxServer(PORTS.nginx, 'on')}\n${nginxServer(PORTS.nginxNoSendfile, 'off')}`),
  ]);

  const { jwksFile, token } = mintToken(work, 'user/Binary.cruds');
  const gateways = [{ name: 'gateway', port: PORTS.gateway, encryption: '' }];
  if (ENCRYPTED) {
    const keyFile = join(work, 'blob-key');
    writeFileSync(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    gateways.push({
      name: 'gateway (encrypted at rest)',
      port: PORTS.gatewayEncrypted,
      encryption: `\n    encryption: { activeKey: k1, keys: [{ id: k1, file: ${keyFile} }] }`,
    });
  }
  // The plain gateway also issues signed file URLs: their downloads are measured beside the
  // bearer-token path (issue 15: within 5% of it).
  const urlKey = join(work, 'url-key');
  writeFileSync(urlKey, randomBytes(32).toString('base64'), { mode: 0o600 });
  const signedUrls = `signedUrls: { enabled: true, keys: [{ id: k1, file: ${urlKey} }], activeKey: k1 }\n`;
  for (const g of gateways) {
    g.blobs = join(work, `blobs-${g.port}`);
    // Random bytes have no signature: declared application/octet-stream, which the allow-list must name (src/content/check.ts).
    const extra = `${g.name === 'gateway' ? signedUrls : ''}content: { allowedTypes: { Binary: [application/octet-stream] } }
storage:
  driver: filesystem
  filesystem:
    directory: ${g.blobs}${g.encryption}
`;
    g.proc = startGateway(
      run,
      writeGatewayConf(work, `gateway-${g.port}.yaml`, { port: g.port, upstream, jwksFile, maxRequestBytes: largest, extra }),
    );
    g.base = `http://127.0.0.1:${g.port}/fhir`;
  }
  await waitFor(`${upstream}/metadata`);
  await waitFor(`http://127.0.0.1:${PORTS.nginx}/`);
  // The one worker serves both nginx servers; its CPU time is what a transfer costs nginx.
  const nginxWorker = Number(readFileSync(`/proc/${nginx.pid}/task/${nginx.pid}/children`, 'utf8').trim());
  if (!Number.isInteger(nginxWorker)) throw new Error('cannot find the nginx worker');
  for (const g of gateways) {
    await waitFor(`${g.base}/metadata`);
    // The pid measured must be the gateway's node process, not a wrapper (taskset execs).
    const cmdline = readFileSync(`/proc/${g.proc.pid}/cmdline`, 'utf8');
    if (!cmdline.includes('fhir-binary-gateway.js')) throw new Error(`pid ${g.proc.pid} is not the gateway: ${cmdline}`);
  }

  // Warm-up, not measured: JIT, the token cache, the upstream's first Binary writes.
  const warm = join(www, 'static', 'warm.bin');
  client(`head -c ${8 * MiB} /dev/urandom > '${warm}'`);
  for (const g of gateways) {
    for (let i = 0; i < 3; i++) {
      const { location } = curl({ method: 'POST', url: `${g.base}/Binary`, upload: warm, token, bytes: 8 * MiB });
      curl({ method: 'GET', url: `${g.base}/Binary/${/\/Binary\/([^/]+)\//.exec(location)[1]}`, token, bytes: 8 * MiB });
    }
  }
  for (const port of [PORTS.nginx, PORTS.nginxNoSendfile])
    curl({ method: 'GET', url: `http://127.0.0.1:${port}/static/warm.bin`, bytes: 8 * MiB });
  curl({ method: 'PUT', url: `http://127.0.0.1:${PORTS.nginx}/upload/warm.bin`, upload: warm, bytes: 8 * MiB });

  const results = [];
  for (const size of SIZES) {
    const file = join(www, 'static', `${size.label}.bin`);
    client(`head -c ${size.bytes} /dev/urandom > '${file}'`);
    const sha256 = client(`sha256sum '${file}' | cut -d' ' -f1`);
    const rec = { size: size.label, bytes: size.bytes, sha256, targets: {} };
    const slot = (name) => (rec.targets[name] ??= { upload: [], download: [], uploadCpuS: 0, downloadCpuS: 0 });
    /** Runs one transfer, adding the CPU time the serving process spent on it to the target's total. */
    const measured = (name, phase, pid, fn) => {
      const before = cpuSeconds(pid);
      const out = fn();
      slot(name)[phase].push(out.mibps);
      slot(name)[`${phase}CpuS`] += cpuSeconds(pid) - before;
      return out;
    };

    // Uploads. Each gateway keeps only its newest blob: the one the downloads read.
    const uploaders = [...gateways.map((g) => g.name), 'nginx'];
    for (const g of gateways) {
      g.idleRssMiB = rssMiB(g.proc.pid); // after the warm-up (and any earlier size)
      resetPeakRss(g.proc.pid);
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (const name of rotate(uploaders, r)) {
        const g = gateways.find((x) => x.name === name);
        if (!g) {
          measured(name, 'upload', nginxWorker, () =>
            curl({ method: 'PUT', url: `http://127.0.0.1:${PORTS.nginx}/upload/${size.label}.bin`, upload: file, bytes: size.bytes }),
          );
          continue;
        }
        const { location } = measured(name, 'upload', g.proc.pid, () =>
          curl({ method: 'POST', url: `${g.base}/Binary`, upload: file, token, bytes: size.bytes }),
        );
        const binaryId = /\/Binary\/([^/]+)\/_history\//.exec(location)?.[1];
        if (!binaryId) throw new Error(`${name}: no Location in the 201 (${location})`);
        const blob = await blobOf(upstream, binaryId);
        // The gateway hashed the stream while storing it: what it recorded must be the file's hash.
        if (blob.sha256 !== sha256) throw new Error(`${name}: stored sha256 ${blob.sha256} ≠ file ${sha256}`);
        if (g.blob) removeBlob(g.blobs, g.blob.id);
        g.blob = { ...blob, binaryId };
      }
    }
    for (const g of gateways) {
      slot(g.name).uploadPeakRssMiB = peakRssMiB(g.proc.pid);
      slot(g.name).idleRssMiB = g.idleRssMiB;
      resetPeakRss(g.proc.pid);
    }

    // Downloads to /dev/null (timed), then one more per gateway hashed as it streams (not timed:
    // sha256sum on CPU 0 would be the bottleneck, not the server).
    const plain = gateways[0];
    const issued = await fetch(`${plain.base}/Binary/${plain.blob.binaryId}/$file-url?window=1h`, {
      headers: { authorization: `Bearer ${token}` },
    });
    if (issued.status !== 200) throw new Error(`$file-url: ${issued.status} ${await issued.text()}`);
    const signedUrl = (await issued.json()).parameter.find((p) => p.name === 'url').valueUrl;
    const servers = {
      ...Object.fromEntries(gateways.map((g) => [g.name, `${g.base}/Binary/${g.blob.binaryId}`])),
      [SIGNED]: signedUrl,
      nginx: `http://127.0.0.1:${PORTS.nginx}/static/${size.label}.bin`,
      'nginx (sendfile off)': `http://127.0.0.1:${PORTS.nginxNoSendfile}/static/${size.label}.bin`,
    };
    for (let r = 0; r < ROUNDS; r++) {
      for (const name of rotate(Object.keys(servers), r)) {
        const g = gateways.find((x) => x.name === name);
        // The signed URL carries its own proof: no token, the plain gateway's process.
        const pid = name === SIGNED ? plain.proc.pid : (g?.proc.pid ?? nginxWorker);
        measured(name, 'download', pid, () => curl({ method: 'GET', url: servers[name], token: g ? token : undefined, bytes: size.bytes }));
      }
    }
    // The signed-URL goal compares two paths of one gateway: back-to-back pairs (order alternating)
    // keep the machine's drift out of the ratio, which three rounds of a 40 ms transfer do not.
    rec.signedPairs = [];
    for (let i = 0; i < SIGNED_PAIRS; i++) {
      const order = i % 2 === 0 ? ['bearer', 'signed'] : ['signed', 'bearer'];
      const got = {};
      for (const which of order)
        got[which] = curl({
          method: 'GET',
          url: which === 'signed' ? signedUrl : servers.gateway,
          token: which === 'signed' ? undefined : token,
          bytes: size.bytes,
        }).mibps;
      rec.signedPairs.push(got.signed / got.bearer);
    }
    slot(SIGNED).sha256Match = client(`curl -sS -f '${signedUrl}' | sha256sum | cut -d' ' -f1`) === sha256;
    for (const g of gateways) {
      const got = client(
        `curl -sS -f -H "Authorization: Bearer $TOKEN" -H 'Accept: application/octet-stream' '${servers[g.name]}' | sha256sum | cut -d' ' -f1`,
        { TOKEN: token },
      );
      slot(g.name).sha256Match = got === sha256;
      slot(g.name).downloadPeakRssMiB = peakRssMiB(g.proc.pid);
      resetPeakRss(g.proc.pid);
    }
    results.push(rec);
    process.stderr.write(`${size.label} done\n`);

    // This size's copies go before the next size is written.
    rmSync(file, { force: true });
    rmSync(join(www, 'upload'), { recursive: true, force: true });
    for (const g of gateways) {
      removeBlob(g.blobs, g.blob.id);
      g.blob = undefined;
    }
  }

  // Medians, ratios against nginx in the same run, and the goals. The download goal is taken
  // against whichever nginx server was faster in this run: "nginx's static-file rate" is the best
  // it managed, not the configuration that happened to suit the gateway.
  const lines = [
    `Run: ${new Date().toISOString()}, node ${process.version}, ${ROUNDS} rounds (median), curl + upstream on CPU 0, server under test on CPU 1`,
    '',
    '| size | target | upload MiB/s | download MiB/s | CPU s/GiB up / down | upload per round | download per round | RSS before / peak up / peak down (MiB) | sha256 back |',
    '|---|---|---:|---:|---:|---|---|---|---|',
  ];
  const ratioLines = [];
  const goals = { rss: true, download: true, sha256: true, signed: true };
  for (const rec of results) {
    for (const [name, t] of Object.entries(rec.targets)) {
      t.uploadMiBps = t.upload.length ? median(t.upload) : undefined;
      t.downloadMiBps = median(t.download);
      t.uploadCpuSPerGiB = t.upload.length ? t.uploadCpuS / t.upload.length / (rec.bytes / GiB) : undefined;
      t.downloadCpuSPerGiB = t.downloadCpuS / t.download.length / (rec.bytes / GiB);
      const rss =
        t.uploadPeakRssMiB === undefined ? '' : `${fmt(t.idleRssMiB)} / ${fmt(t.uploadPeakRssMiB)} / ${fmt(t.downloadPeakRssMiB)}`;
      const sha = t.sha256Match === undefined ? '' : t.sha256Match ? 'identical' : '**DIFFERENT**';
      const up = t.upload.length ? fmt(t.uploadMiBps) : '–';
      const cpu = `${t.upload.length ? fmt(t.uploadCpuSPerGiB, 2) : '–'} / ${fmt(t.downloadCpuSPerGiB, 2)}`;
      lines.push(
        `| ${rec.size} | ${name} | ${up} | ${fmt(t.downloadMiBps)} | ${cpu} | ${t.upload.map((x) => fmt(x)).join(', ')} | ${t.download.map((x) => fmt(x)).join(', ')} | ${rss} | ${sha} |`,
      );
      if (t.uploadPeakRssMiB !== undefined) {
        goals.rss &&= Math.max(t.uploadPeakRssMiB, t.downloadPeakRssMiB) <= RSS_GOAL_MIB;
        goals.sha256 &&= t.sha256Match;
      }
      if (name === SIGNED) goals.sha256 &&= t.sha256Match;
    }
    const nginx = rec.targets.nginx;
    const nginxCopy = rec.targets['nginx (sendfile off)'];
    const bestNginx = Math.max(nginx.downloadMiBps, nginxCopy.downloadMiBps);
    rec.ratios = {};
    for (const g of gateways) {
      const t = rec.targets[g.name];
      const ratio = {
        upload: t.uploadMiBps / nginx.uploadMiBps,
        download: t.downloadMiBps / nginx.downloadMiBps,
        downloadVsSendfileOff: t.downloadMiBps / nginxCopy.downloadMiBps,
        downloadVsBestNginx: t.downloadMiBps / bestNginx,
        uploadCpu: t.uploadCpuSPerGiB / nginx.uploadCpuSPerGiB,
        downloadCpu: t.downloadCpuSPerGiB / nginx.downloadCpuSPerGiB,
      };
      rec.ratios[g.name] = ratio;
      if (g.name === 'gateway') goals.download &&= ratio.downloadVsBestNginx >= DOWNLOAD_GOAL;
      ratioLines.push(
        `- ${rec.size}, ${g.name} / nginx: upload **${fmt(ratio.upload, 2)}×**; download **${fmt(ratio.download, 2)}×** (sendfile on), ${fmt(ratio.downloadVsSendfileOff, 2)}× (sendfile off); CPU per GiB ${fmt(ratio.uploadCpu, 1)}× up, ${fmt(ratio.downloadCpu, 1)}× down (vs sendfile on)`,
      );
    }
  }
  for (const rec of results) {
    const signed = rec.targets[SIGNED];
    const bearer = rec.targets.gateway;
    const vsBearer = signed.downloadMiBps / bearer.downloadMiBps;
    const paired = median(rec.signedPairs);
    rec.ratios[SIGNED] = {
      download: signed.downloadMiBps / rec.targets.nginx.downloadMiBps,
      downloadVsBearer: vsBearer,
      pairedVsBearer: paired,
    };
    goals.signed &&= paired >= SIGNED_GOAL;
    ratioLines.push(
      `- ${rec.size}, signed URL: download **${fmt(rec.ratios[SIGNED].download, 2)}×** nginx; vs the bearer-token path **${fmt(paired, 2)}×** paired (median of ${SIGNED_PAIRS} back-to-back pairs: ${rec.signedPairs.map((x) => fmt(x, 2)).join(', ')}), ${fmt(vsBearer, 2)}× by round medians`,
    );
  }
  const verdict = (ok) => (ok ? 'met' : '**not met**');
  lines.push('', ...ratioLines, '');
  lines.push(`- Goal: peak RSS ≤ ${RSS_GOAL_MIB} MiB at every size: ${verdict(goals.rss)}`);
  lines.push(
    `- Goal: gateway download ≥ ${DOWNLOAD_GOAL}× nginx (the faster of its two servers, at every size): ${verdict(goals.download)}`,
  );
  lines.push(
    `- Goal: signed-URL download ≥ ${SIGNED_GOAL}× the bearer-token path (paired median, at every size): ${verdict(goals.signed)}`,
  );
  lines.push(`- Every download through the gateway byte-identical (sha256): ${goals.sha256 ? 'yes' : '**no**'}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  writeOut('binary-transfer.json', { date: new Date().toISOString(), node: process.version, rounds: ROUNDS, results, goals });
  if (!goals.sha256) process.exitCode = 1;
} finally {
  await run.close();
}
