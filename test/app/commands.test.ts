import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { exportJWK, generateKeyPair, decodeProtectedHeader } from 'jose';
import t from 'tap';
import { runCheck } from '../../src/app/check-command.js';
import { runToken } from '../../src/app/token-command.js';

function sink(): Writable & { text: string } {
  const w = new Writable({
    write(chunk: Buffer, _e, cb) {
      w.text += chunk.toString();
      cb();
    },
  }) as Writable & { text: string };
  w.text = '';
  return w;
}

const dir = mkdtempSync(join(tmpdir(), 'fbg-commands-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const policy = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};

t.test('token: the algorithm from the key when it names none; errors for what cannot sign', async (t) => {
  const rsa = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(rsa.privateKey); // no alg, no kid
  writeFileSync(join(dir, 'rsa.json'), JSON.stringify(jwk));
  const config = policy(
    'p.yaml',
    'upstream: { url: http://127.0.0.1:9/fhir }\nauth: { issuers: [i], audiences: [a], jwksUri: http://127.0.0.1:9/jwks }\n',
  );
  const out = sink();
  t.equal(await runToken({ config, key: join(dir, 'rsa.json'), scope: 'user/*.rs' }, {}, out), 0);
  const header = decodeProtectedHeader(out.text.trim());
  t.same(header, { alg: 'RS256', typ: 'at+jwt' }, 'RS256 from an RSA key, no kid');
  writeFileSync(join(dir, 'okp.json'), JSON.stringify({ kty: 'OKP', crv: 'Ed25519', d: 'x', x: 'y' }));
  await t.rejects(runToken({ config, key: join(dir, 'okp.json'), scope: 's' }, {}, sink()), { message: /names no alg/ });
  writeFileSync(join(dir, 'junk.json'), 'not json');
  await t.rejects(runToken({ config, key: join(dir, 'junk.json'), scope: 's' }, {}, sink()), { message: /not JSON/ });
  await t.rejects(runToken({ config, key: join(dir, 'missing.json'), scope: 's' }, {}, sink()), { message: /ENOENT/ });
  await t.rejects(runToken({ config, key: join(dir, 'rsa.json'), scope: 's', ttl: 'soon' }, {}, sink()), { message: /--ttl/ });
  // A policy that asks for no tokens at all names no issuer to mint one for.
  const open = policy('open.yaml', 'upstream: { url: http://127.0.0.1:9/fhir }\ndefaultRule: { require: { auth: false, smart: false } }\n');
  await t.rejects(runToken({ config: open, key: join(dir, 'rsa.json'), scope: 's' }, {}, sink()), {
    message: /names no issuer or audience/,
  });
});

t.test('check: every problem at once, as a start would give them', async (t) => {
  const noUpstream = policy('nu.yaml', 'auth: { issuers: [i], audiences: [a], jwksUri: http://127.0.0.1:9/jwks }\n');
  t.throws(() => runCheck({ config: noUpstream }, {}, sink()), { message: /\/upstream\/url: is required/ });
  const out = sink();
  t.equal(
    runCheck({ config: noUpstream }, { GATEWAY_UPSTREAM_URL: 'http://127.0.0.1:9/fhir' }, out),
    0,
    'the environment counts, as at start',
  );
  t.match(out.text, /: OK \(\d+ rules, storage filesystem\)\n$/, 'no key count for a key set fetched at run time');
  writeFileSync(join(dir, 'bad-jwks.json'), '{"keys": "no"}');
  const bad = policy(
    'bk.yaml',
    'upstream: { url: http://127.0.0.1:9/fhir }\nauth: { issuers: [i], audiences: [a], jwksFile: bad-jwks.json }\n',
  );
  t.throws(() => runCheck({ config: bad }, {}, sink()), { message: /bk\.yaml: / }, 'a key file jose cannot read');
  // Signed URL keys are read as at start: a short one is a problem; good ones are counted.
  writeFileSync(join(dir, 'url-short.key'), Buffer.alloc(16, 1).toString('base64'));
  writeFileSync(join(dir, 'url-good.key'), Buffer.alloc(32, 2).toString('base64'));
  const urls = (file: string) =>
    policy(
      'su.yaml',
      `upstream: { url: http://127.0.0.1:9/fhir }\ndefaultRule: { require: { auth: false, smart: false } }\nsignedUrls: { enabled: true, keys: [{ id: u1, file: ${file} }], activeKey: u1 }\n`,
    );
  t.throws(() => runCheck({ config: urls('url-short.key') }, {}, sink()), { message: /signedUrls\/keys\/0.*at least 32 bytes/ });
  const good = sink();
  t.equal(runCheck({ config: urls('url-good.key') }, {}, good), 0);
  t.match(good.text, /signed URLs: 1 keys \(active u1\)\)\n$/);
  t.notMatch(good.text, /warning/);
  // Valid, but uploads would get no URL: a warning, still 0.
  const gql = policy(
    'gq.yaml',
    'upstream: { url: http://127.0.0.1:9/fhir }\ndefaultRule: { require: { auth: false, smart: false } }\ngraphql: { enabled: true }\n',
  );
  const warned = sink();
  t.equal(runCheck({ config: gql }, {}, warned), 0);
  t.match(warned.text, /gq\.yaml: warning: graphql is enabled but signedUrls is not/);
});

t.test(
  'sweep: a report on stdout; audited to a file, never to stdout (it carries the report); no upstream is a config error',
  async (t) => {
    const { runSweep } = await import('../../src/app/sweep-command.js');
    const blobs = join(dir, 'sweep-blobs');
    const audit = join(dir, 'sweep-audit.log');
    const base = `upstream: { url: http://127.0.0.1:9/fhir }\nauth: { issuers: [i], audiences: [a], jwksUri: http://127.0.0.1:9/jwks }\nstorage: { filesystem: { directory: ${blobs} } }\n`;
    const toFile = policy('sweep-file.yaml', `${base}audit: { destination: file, file: ${audit} }\n`);
    const out = sink();
    t.equal(await runSweep({ config: toFile, 'dry-run': true }, {}, out as unknown as NodeJS.WriteStream), 0);
    t.match(JSON.parse(out.text), { driver: 'filesystem', claimed: true, deleted: [] }, 'a dry run: nothing to do in an empty store');
    const plain = sink();
    t.equal(await runSweep({ config: policy('sweep-stdout.yaml', base) }, {}, plain as unknown as NodeJS.WriteStream), 0);
    t.equal(plain.text.trim().split('\n').length, 1, 'stdout carries the report alone');
    const noUpstream = policy('sweep-nu.yaml', 'defaultRule: { require: { auth: false, smart: false } }\n');
    await t.rejects(runSweep({ config: noUpstream }, {}, sink() as unknown as NodeJS.WriteStream), {
      message: /\/upstream\/url: is required/,
    });
  },
);

t.test('health: a TLS main listener is asked over HTTPS, on loopback for an any-address bind', async (t) => {
  const { runHealth } = await import('../../src/app/health-command.js');
  const { makeSelfSignedCert } = await import('../helpers/tls.js');
  const https = await import('node:https');
  const { readFileSync } = await import('node:fs');
  const cert = makeSelfSignedCert(t);
  const server = https.createServer({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) }, (req, res) =>
    res.writeHead(req.url === '/healthz' ? 200 : 404).end(),
  );
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const config = policy(
    'health-tls.yaml',
    `server: { host: 0.0.0.0, port: ${port}, tls: { certFile: ${cert.certFile}, keyFile: ${cert.keyFile} } }\nupstream: { url: http://127.0.0.1:9/fhir }\ndefaultRule: { require: { auth: false, smart: false } }\n`,
  );
  const out = sink();
  t.equal(await runHealth({ config }, {}, out), 0, 'its own certificate is not checked: it is a liveness probe');
  t.same(JSON.parse(out.text), { healthy: true, status: 200 });
});
