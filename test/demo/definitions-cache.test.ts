// The embedded FHIR server's definitions, slimmed and cached: what is dropped, what stays, and
// when the cached copy is (and is not) used.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { readSlimDefinitions, slimDefinitions } from '../../src/demo/definitions-cache.js';

const element = (path: string) => ({
  id: path,
  path,
  min: 0,
  max: '1',
  type: [{ code: 'string' }],
  binding: { strength: 'required', valueSet: 'http://example.org/vs' },
  constraint: [{ key: 'x-1', severity: 'error', expression: 'true' }],
  definition: 'what it is',
  comment: 'a comment',
  requirements: 'why',
  mapping: [{ identity: 'v2', map: 'PID-3' }],
});
const bundle = () => ({
  resourceType: 'Bundle',
  entry: [
    {
      resource: {
        resourceType: 'StructureDefinition',
        name: 'Thing',
        text: { status: 'generated', div: '<div>long narrative</div>' },
        snapshot: { element: [element('Thing'), element('Thing.name')] },
        differential: { element: [element('Thing.name')] },
      },
    },
  ],
});

t.test('slimDefinitions drops narratives, differentials and element documentation, and nothing the router reads', async (t) => {
  const slim = slimDefinitions(bundle());
  const r = slim.entry![0].resource!;
  t.notOk('text' in r);
  t.notOk('differential' in r);
  t.same(r.snapshot!.element![1], {
    id: 'Thing.name',
    path: 'Thing.name',
    min: 0,
    max: '1',
    type: [{ code: 'string' }],
    binding: { strength: 'required', valueSet: 'http://example.org/vs' },
    constraint: [{ key: 'x-1', severity: 'error', expression: 'true' }],
    definition: 'what it is',
  });
});

t.test('readSlimDefinitions caches the slimmed file and uses it only while the source is unchanged', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'fbg-defs-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dataDir = join(root, 'dist');
  mkdirSync(join(dataDir, 'fhir', 'r4'), { recursive: true });
  const source = join(dataDir, 'fhir', 'r4', 'profiles-resources.json');
  writeFileSync(source, JSON.stringify(bundle()));
  const cacheDir = join(root, 'cache');

  const first = readSlimDefinitions(dataDir, 'fhir/r4/profiles-resources.json', cacheDir);
  t.notOk('text' in first.entry![0].resource!, 'slimmed');
  const files = readdirSync(cacheDir);
  t.equal(files.length, 1, 'one cached file, no temporary left');
  t.same(JSON.parse(readFileSync(join(cacheDir, files[0]), 'utf8')), first);

  // The next start reads the cached copy, not the source.
  writeFileSync(join(cacheDir, files[0]), JSON.stringify({ entry: [{ resource: { name: 'from the cache' } }] }));
  t.same(readSlimDefinitions(dataDir, 'fhir/r4/profiles-resources.json', cacheDir).entry, [{ resource: { name: 'from the cache' } }]);

  // A changed source (another version of the package) is read again.
  utimesSync(source, new Date(), new Date(Date.now() + 5_000));
  t.equal(readSlimDefinitions(dataDir, 'fhir/r4/profiles-resources.json', cacheDir).entry![0].resource!['name'], 'Thing');

  // A cache that cannot be written costs only time.
  const blocked = join(root, 'blocked');
  writeFileSync(blocked, 'a file where the cache directory would be');
  t.equal(readSlimDefinitions(dataDir, 'fhir/r4/profiles-resources.json', join(blocked, 'cache')).entry![0].resource!['name'], 'Thing');
});
