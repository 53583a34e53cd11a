import t from 'tap';
import { restartOnlyChanges } from '../../src/app/reload-scope.js';
import { buildConfig } from '../../src/config/load.js';

const base = {
  upstream: { url: 'http://127.0.0.1:1/fhir' },
  auth: { jwksUri: 'http://127.0.0.1:1/jwks', issuers: ['t'], audiences: ['t'] },
};
const config = (over: Record<string, unknown> = {}) => buildConfig({ ...base, ...over }, 'test', '/tmp');

t.test('what a reload leaves for a restart, by key; what it applies, not named', async (t) => {
  t.same(restartOnlyChanges(config(), config()), []);
  t.same(restartOnlyChanges(config(), config({ server: { port: 9000, trustedProxies: ['10.1.0.0/16'], shutdownTimeoutMs: 5000 } })), [
    'server.port',
  ]);
  t.same(
    restartOnlyChanges(config(), config({ storage: { driver: 's3', s3: { bucket: 'b' } } })),
    ['storage.driver', 'storage.s3'],
    'a section that appears is named whole',
  );
  t.same(restartOnlyChanges(config(), config({ observability: { listen: { port: 9464 } } })), ['observability.listen']);
  t.same(restartOnlyChanges(config(), config({ rules: [{ name: 'r', match: { interactions: ['read'] }, require: { auth: false } }] })), []);
  t.same(restartOnlyChanges(config(), config({ admin: { enabled: true } })), ['admin.enabled'], 'turning the admin API on');
  t.same(restartOnlyChanges(config({ admin: { enabled: true } }), config()), [], 'turning it off applies');
  t.same(restartOnlyChanges(config(), config({ graphql: { path: '/files' } })), ['graphql.path'], 'the GraphQL route');
  t.same(restartOnlyChanges(config(), config({ graphql: { enabled: true, maxFiles: 2 } })), [], 'turning GraphQL on, its limits');
});
