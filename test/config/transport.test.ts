// Rules that require HTTPS on a gateway that cannot see HTTPS refuse every request they match
// (issue 12): rulesRefusingEverything names them, for the start and reload warning.
import t from 'tap';
import { rulesRefusingEverything } from '../../src/config/transport.js';
import { buildConfig } from '../../src/config/load.js';
import { makeSelfSignedCert } from '../helpers/tls.js';

const build = (over: Record<string, unknown>) =>
  buildConfig(
    {
      upstream: { url: 'http://upstream.test/fhir' },
      auth: { issuers: ['https://issuer.test'], audiences: ['gw'], jwksUri: 'https://issuer.test/jwks' },
      ...over,
    },
    'test.yaml',
    '/cfg',
  );

const RULES = [
  { name: 'public-metadata', match: { interactions: ['capabilities'] }, require: { auth: false, https: false } },
  { name: 'writes', match: { interactions: ['create'] }, require: { scopes: ['fhir.write'] } },
  { name: 'secure-reads', match: { interactions: ['read'] }, require: { https: true } },
];

t.test('without TLS or trusted proxies: every rule that requires HTTPS, inherited or its own, defaultRule last', async (t) => {
  t.same(rulesRefusingEverything(build({ rules: RULES })), ['writes', 'secure-reads', 'defaultRule'], 'the secure default applies');
  t.same(
    rulesRefusingEverything(build({ rules: RULES, defaultRule: { require: { https: false } } })),
    ['secure-reads'],
    'a defaultRule without HTTPS: only the rule that asks for it',
  );
  t.same(rulesRefusingEverything(build({ rules: [RULES[0]], defaultRule: { require: { https: false } } })), [], 'nothing requires HTTPS');
});

t.test('TLS on the gateway, or a trusted proxy that forwards the protocol: no rule is unreachable', async (t) => {
  t.same(rulesRefusingEverything(build({ rules: RULES, server: { trustedProxies: ['10.0.0.0/8'] } })), []);
  const cert = makeSelfSignedCert(t);
  t.same(rulesRefusingEverything(build({ rules: RULES, server: { tls: { certFile: cert.certFile, keyFile: cert.keyFile } } })), []);
});
