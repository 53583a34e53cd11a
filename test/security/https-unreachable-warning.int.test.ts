// Secure by default (issue 12): a policy that requires HTTPS on a gateway that neither terminates
// TLS nor trusts a proxy refuses every request those rules match. The gateway still starts (fail
// closed), but says so at start and on reload, naming the rules, instead of leaving operators to
// find out from clients' 403s.
import t from 'tap';
import { buildConfig } from '../../src/config/load.js';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';
import { outcome } from '../attack/helpers.js';

const WARNING =
  /^these rules require HTTPS, but the gateway neither terminates TLS \(server\.tls\) nor trusts a proxy .*every request they match will be refused \(403 INSECURE_TRANSPORT\)$/;

t.test('start and reload warn, naming the rules that will refuse every request', async (t) => {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const rules = [
    { name: 'public-metadata', match: { interactions: ['capabilities'] }, require: { auth: false, smart: false, https: false } },
    { name: 'secure-reads', match: { interactions: ['read'] }, require: { https: true } },
  ];
  const gw = await startTestGateway(t, {
    upstream: up.url,
    jwksUri: jwks.url,
    config: { rules, defaultRule: { require: { https: true } } },
  });
  const warnings = () => gw.logs.lines.filter((l) => l['level'] === 'warn' && WARNING.test(String(l['msg'])));
  t.same(
    warnings().map((l) => l['rules']),
    [['secure-reads', 'defaultRule']],
    'one warning at start, naming the rules',
  );

  // What it warns about: those requests are refused, the others are not.
  const auth = { authorization: `Bearer ${await mintToken(key, { claims: { scope: 'user/*.rs' } })}` };
  t.same(await outcome(fetch(`${gw.base}/Patient/1`, { headers: auth })), [403, 'INSECURE_TRANSPORT'], 'secure-reads');
  t.same(await outcome(fetch(`${gw.base}/Patient?_count=1`, { headers: auth })), [403, 'INSECURE_TRANSPORT'], 'defaultRule');
  const metadata = await fetch(`${gw.base}/metadata`);
  t.equal(metadata.status, 200, 'a rule without HTTPS still answers');
  await metadata.arrayBuffer();

  const reloadConfig = (extra: Record<string, unknown>) =>
    buildConfig(
      {
        server: { host: '127.0.0.1', port: 0, ...extra },
        upstream: { url: up.url },
        auth: { issuers: ['https://issuer.test'], audiences: ['fhir-binary-gateway'], jwksUri: jwks.url },
        rules,
        defaultRule: { require: { https: false } },
      },
      '(reload)',
      process.cwd(),
    );
  gw.reload(reloadConfig({}));
  t.same(
    warnings().map((l) => l['rules']),
    [['secure-reads', 'defaultRule'], ['secure-reads']],
    'a reload warns again with the rules of the new policy',
  );
  gw.reload(reloadConfig({ trustedProxies: ['10.0.0.0/8'] }));
  t.equal(warnings().length, 2, 'a trusted proxy can forward HTTPS: no warning');
});
