// Secure by default (issue 12): the schema's defaults and the shipped policies/default.yaml are
// one and the same, so a policy file that leaves a key out gets what the shipped file says, and
// the two cannot drift apart (they did: the schema had `smart: false`, the file `smart: true`).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { DEFAULT_POLICY_FILE } from '../../src/config/embedded.js';
import { buildConfig } from '../../src/config/load.js';

/** What no default can say: where the upstream is and whose tokens to trust. The same for both sides. */
function deployed(doc: Record<string, any>): Record<string, unknown> {
  return {
    ...doc,
    upstream: { ...doc['upstream'], url: 'http://upstream.test/fhir' },
    auth: { ...doc['auth'], issuers: ['https://issuer.test'], audiences: ['gw'], jwksUri: 'https://issuer.test/jwks' },
  };
}

const shipped = () => parse(readFileSync(DEFAULT_POLICY_FILE, 'utf8')) as Record<string, any>;

t.test('policies/default.yaml sets nothing the schema defaults do not already say', async (t) => {
  const file = shipped();
  // Its rules are policy, not defaults: a file of one's own states its rules (or none). Every
  // other key the shipped file writes down must be the schema's default for that key.
  const fromFile = buildConfig(deployed(file), 'default.yaml', '/cfg');
  const fromDefaults = buildConfig(deployed({ rules: file['rules'] }), '(schema defaults)', '/cfg');
  t.same(fromFile, fromDefaults, 'the whole configuration is equal');
  t.same(fromDefaults.defaultRule.require, { https: true, auth: true, smart: true, scopes: [], ipAllow: [], ipDeny: [] }, 'secure');
});

t.test('the comparison sees a drift: a shipped value that differs from its default fails it', async (t) => {
  const file = shipped();
  file['defaultRule']['require']['smart'] = false;
  const drifted = buildConfig(deployed(file), 'default.yaml', '/cfg');
  const fromDefaults = buildConfig(deployed({ rules: shipped()['rules'] }), '(schema defaults)', '/cfg');
  t.notSame(drifted, fromDefaults);
  t.equal(drifted.defaultRule.require.smart, false);
});
