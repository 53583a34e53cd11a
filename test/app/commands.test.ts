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
});
