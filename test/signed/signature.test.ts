import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildConfig } from '../../src/config/load.js';
import { parseDuration } from '../../src/lib/duration.js';
import { inSpan, parseAddress, parseSpan } from '../../src/lib/ip.js';
import { loadSigningKeys } from '../../src/signed/keys.js';
import {
  canonical,
  parseSigned,
  signature,
  signedQuery,
  SIGNED_VERSION,
  shashOf,
  sha256OfShash,
  verifySignature,
  type SignedFields,
} from '../../src/signed/signature.js';

const FIELDS: SignedFields = {
  path: '_file/Binary/1/abc',
  sv: SIGNED_VERSION,
  sr: 'b',
  sp: 'r',
  st: '2026-12-06T10:00:00Z',
  se: '2026-12-06T10:15:00Z',
  sip: '10.0.0.0-10.0.0.9',
  spr: 'https',
  si: 'downloads',
  rsct: 'application/pdf',
  rscd: 'attachment; filename="a b.pdf"',
  skid: 'k1',
  shash: shashOf('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'),
};
const KEY = randomBytes(32);
const query = (f: SignedFields = FIELDS, key = KEY) => signedQuery(f, signature(f, key));

t.test('a URL parses back to the fields it was made from, and verifies', async (t) => {
  const q = query();
  t.match(q, /^sv=2026-12-01&sr=b&sp=r&st=.*&sig=[A-Za-z0-9_-]{43}$/, 'parameters in order, sig last');
  const { fields, sig } = parseSigned(FIELDS.path, q);
  t.same(fields, FIELDS);
  t.doesNotThrow(() => verifySignature(fields, sig, new Map([['k1', KEY]])));
  t.equal(canonical(FIELDS).split('\n').length, 14, 'one line per field, after the scheme line (a read URL: shash, no spath line)');
});

t.test('shash: the content SHA-256 as base64url, and back', async (t) => {
  const hex = '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824';
  t.match(shashOf(hex), /^[A-Za-z0-9_-]{43}$/);
  t.equal(sha256OfShash(shashOf(hex)), hex);
});

t.test('optional fields absent: empty lines, and still distinct from any other URL', async (t) => {
  const bare: SignedFields = { ...FIELDS, sip: undefined, si: undefined, rsct: undefined, rscd: undefined };
  const { fields, sig } = parseSigned(bare.path, query(bare));
  t.same(fields, bare);
  verifySignature(fields, sig, new Map([['k1', KEY]]));
  // Moving a value from one field to the next changes the string: fields are positional.
  t.not(canonical({ ...bare, sip: 'x' }), canonical({ ...bare, si: 'x' }));
});

t.test('every change to a signed field, the path or the key breaks the signature', async (t) => {
  const keys = new Map([['k1', KEY]]);
  const { sig } = parseSigned(FIELDS.path, query());
  for (const [name, value] of Object.entries({
    path: '_file/Binary/2/abc',
    sp: 'rw',
    st: '2026-12-06T09:00:00Z',
    se: '2026-12-06T11:15:00Z',
    sip: '0.0.0.0-255.255.255.255',
    spr: 'https,http',
    si: 'other',
    rsct: 'text/html',
    rscd: 'inline',
    shash: shashOf('0'.repeat(64)),
  })) {
    t.throws(() => verifySignature({ ...FIELDS, [name]: value }, sig, keys), { code: 'SIGNATURE_INVALID' }, name);
  }
  t.throws(() => verifySignature(FIELDS, sig, new Map([['k1', randomBytes(32)]])), { code: 'SIGNATURE_INVALID' }, 'another key');
  t.throws(() => verifySignature(FIELDS, sig, new Map([['k2', KEY]])), { code: 'SIGNATURE_INVALID' }, 'an unknown key id');
});

t.test('a write URL signs its attachment path: changed or added, the signature breaks', async (t) => {
  const w: SignedFields = {
    ...FIELDS,
    path: '_file/DocumentReference/1/upload',
    sp: 'w',
    spath: 'DocumentReference.content[0].attachment',
    shash: undefined,
  };
  const keys = new Map([['k1', KEY]]);
  const { fields, sig } = parseSigned(w.path, query(w));
  t.same(fields, w);
  verifySignature(fields, sig, keys);
  t.throws(() => verifySignature({ ...w, spath: 'DocumentReference.content[1].attachment' }, sig, keys), { code: 'SIGNATURE_INVALID' });
  t.equal(canonical({ ...w, spath: undefined }).split('\n').length, 15, 'an absent spath (and svid) is still a line of a write URL');
});

t.test('malformed URLs are refused before any signature is computed', async (t) => {
  const q = query();
  const bad: [string, string][] = [
    [`${q}&x=1`, 'unknown parameter'],
    [`${q}&sp=r`, 'twice'],
    [q.replace('sp=r', 'sp=r%0d'), 'malformed'],
    [q.replace('sp=r', `sp=${'r'.repeat(600)}`), 'malformed'],
    [q.replace(/&skid=k1/, ''), "'skid' is missing"],
    [q.replace('sv=2026-12-01', 'sv=2020-01-01'), 'signed version'],
    [q.replace('sr=b', 'sr=c'), "'sr'"],
    [q.replace('sp=r', 'sp=x'), "'sp'"],
    [q.replace(/st=[^&]+/, 'st=2026-12-06'), "'st'"],
    [q.replace(/se=[^&]+/, 'se=2026-12-06T10%3A15%3A00.000Z'), "'se'"],
    [q.replace('spr=https', 'spr=http'), "'spr'"],
    [q.replace('skid=k1', 'skid=k%201'), "'skid'"],
    [q.replace(/sig=.*/, 'sig=abc'), "'sig'"],
    [q.replace(/&shash=[^&]+/, ''), "'shash' is missing"],
    [q.replace(/shash=[^&]+/, 'shash=abc'), "'shash' is missing or malformed"],
    [query({ ...FIELDS, path: '_file/DocumentReference/1/upload', sp: 'w', spath: 'x' }), "'shash'"],
  ];
  for (const [text, why] of bad)
    t.throws(() => parseSigned(FIELDS.path, text), { code: 'SIGNATURE_INVALID', message: new RegExp(why) }, why);
  t.throws(() => parseSigned('_file/Binary/1/a\u0085b', q), { code: 'SIGNATURE_INVALID' }, 'a C1 control in the path');
});

t.test('durations', async (t) => {
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('15m'), 900_000);
  t.equal(parseDuration('2h'), 7_200_000);
  t.equal(parseDuration('1d'), 86_400_000);
  for (const bad of ['0m', '15', 'm', '1.5h', '-1m', '15min', ' 15m']) t.equal(parseDuration(bad), undefined, bad);
});

t.test('sip: one address, CIDR, or an Azure first-last range of one family', async (t) => {
  const a = (s: string) => parseAddress(s)!;
  t.ok(inSpan(a('10.0.0.5'), parseSpan('10.0.0.0-10.0.0.9')!));
  t.notOk(inSpan(a('10.0.0.10'), parseSpan('10.0.0.0-10.0.0.9')!));
  t.notOk(inSpan(a('9.255.255.255'), parseSpan('10.0.0.0-10.0.0.9')!));
  t.ok(inSpan(a('10.1.2.3'), parseSpan('10.0.0.0/8')!));
  t.ok(inSpan(a('::ffff:10.1.2.3'), parseSpan('10.1.2.3')!), 'a mapped address is its IPv4 one');
  t.notOk(inSpan(a('2001:db8::1'), parseSpan('10.0.0.0-10.0.0.9')!), 'another family');
  t.ok(inSpan(a('2001:db8::5'), parseSpan('2001:db8::1-2001:db8::9')!));
  for (const bad of ['10.0.0.9-10.0.0.0', '10.0.0.0-2001:db8::1', 'x-y', '10.0.0.0/40', '010.0.0.1'])
    t.equal(parseSpan(bad), undefined, bad);
});

t.test('keys: from a file or a variable, base64 or base64url of at least 32 bytes; problems named, values never', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-keys-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const secret = randomBytes(48);
  writeFileSync(join(dir, 'a'), `${secret.toString('base64')}\n`);
  const keys = loadSigningKeys(
    [
      { id: 'a', file: join(dir, 'a') },
      { id: 'b', env: 'URL_KEY_B' },
    ],
    { URL_KEY_B: secret.toString('base64url') },
  );
  t.same(keys.get('a'), secret);
  t.same(keys.get('b'), secret);
  const short = randomBytes(16).toString('base64');
  try {
    loadSigningKeys(
      [
        { id: 'missing-file', file: join(dir, 'nope') },
        { id: 'unset', env: 'NOPE' },
        { id: 'short', env: 'SHORT' },
        { id: 'junk', env: 'JUNK' },
      ],
      { SHORT: short, JUNK: 'not base64!' },
    );
    t.fail('should throw');
  } catch (err) {
    const problems = (err as { problems: string[] }).problems;
    t.equal(problems.length, 4);
    t.match(problems[0], /keys\/0.*cannot read .*nope \(ENOENT\)/);
    t.match(problems[1], /keys\/1.*NOPE is empty or not set/);
    t.match(problems[2], /keys\/2.*at least 32 bytes/);
    t.notOk(problems.join(' ').includes(short), 'the secret is never in the message');
  }
});

t.test('configuration: what the schema cannot say is checked, with the key path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-keys-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'k1'), randomBytes(32).toString('base64'));
  const base = { upstream: { url: 'http://fhir.test' }, defaultRule: { require: { auth: false, smart: false } } };
  const problems = (signedUrls: Record<string, unknown>): string => {
    try {
      buildConfig({ ...base, signedUrls }, 'p.yaml', dir);
      return '';
    } catch (err) {
      return (err as { problems: string[] }).problems.join('\n');
    }
  };
  t.equal(problems({ enabled: true, keys: [{ id: 'k1', file: 'k1' }], activeKey: 'k1' }), '', 'a relative key file, from the policy file');
  t.match(problems({ enabled: true }), /\/signedUrls\/keys: at least one key[\s\S]*\/signedUrls\/activeKey: is required/);
  t.match(problems({ keys: [{ id: 'k1', file: 'k1' }], activeKey: 'k2' }), /activeKey: 'k2' is not among the keys/);
  t.match(
    problems({
      keys: [
        { id: 'k1', file: 'k1' },
        { id: 'k1', env: 'X' },
      ],
    }),
    /key ids must be unique/,
  );
  t.match(problems({ keys: [{ id: 'k1' }] }), /keys\/0: set exactly one of file or env/);
  t.match(problems({ keys: [{ id: 'k1', file: 'gone' }] }), /keys\/0\/file: file not found/);
  t.match(
    problems({
      policies: [
        { id: 'p', permissions: 'r', maxWindow: '1m' },
        { id: 'p', permissions: 'r', maxWindow: '1m' },
      ],
      defaultPolicy: 'q',
    }),
    /policy ids must be unique[\s\S]*defaultPolicy: 'q' is not among the policies/,
  );
  t.match(
    problems({ policies: [{ id: 'p', permissions: 'r', maxWindow: '1m', notAfter: '2026-13-45T99:00:00Z' }] }),
    /notAfter: is not a valid time/,
  );
  t.match(problems({ defaultWindow: '2h' }), /defaultWindow: must not be longer than maxWindow/);
  t.match(problems({ maxWindow: '15 minutes' }), /maxWindow/);
});
