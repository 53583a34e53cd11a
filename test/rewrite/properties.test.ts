// Property-based tests of the rewrite engine (fast-check), both directions over a real filesystem
// store: round trip, budgets, JSON without attachments, and chunk boundaries from 1 byte to 64 KiB.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import t from 'tap';
import { BLOB_EXTENSION_URL } from '../../src/fhir/blob-reference.js';
import { engine, type Engine } from '../helpers/engine.js';

const RUNS = Number(process.env['FC_RUNS'] ?? 40);
const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('base64');

/**
 * Printable text (what text/plain may hold: the content check sniffs it), or nothing. It starts
 * with a word, as text does: random bytes may begin with a signature (`BM` is a BMP, `%!` PostScript)
 * and be refused, rightly.
 */
const text = (max: number) =>
  fc.oneof(
    {
      arbitrary: fc
        .uint8Array({ minLength: 0, maxLength: max })
        .map((a) => Buffer.concat([Buffer.from('note '), Buffer.from(a.map((b) => 32 + (b % 95)))])),
      weight: 9,
    },
    { arbitrary: fc.constant(Buffer.alloc(0)), weight: 1 },
  );
/** Members that mean something to the engine are left to the structure below, not to noise. */
const RESERVED =
  /"(_?data|size|hash|contentType|resourceType|url|id|fullUrl|type|location|link|resource|outcome|contained|entry|parameter)":/;
const noise = fc
  .dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 })
  .map((v) => JSON.parse(JSON.stringify(v)) as Record<string, unknown>)
  .filter((v) => !RESERVED.test(JSON.stringify(v)));
/** Chunk sizes: the byte stream is cut at these, in turn. */
const cuts = fc
  .array(fc.integer({ min: 1, max: 65536 }), { minLength: 1, maxLength: 6 })
  .chain((big) => fc.oneof(fc.constant(big), fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 4 })));

interface Att {
  readonly contentType: string;
  readonly title?: string;
  readonly bytes: Buffer;
}
interface Res {
  readonly resourceType: 'DocumentReference' | 'Patient' | 'Observation';
  readonly id: string;
  readonly atts: readonly Att[];
  readonly extra: Record<string, unknown>;
}

const att = (max: number) =>
  fc
    .record({ contentType: fc.constant('text/plain'), title: fc.option(fc.string({ maxLength: 6 }), { nil: undefined }), bytes: text(max) })
    .map((a) => (a.title === undefined ? { contentType: a.contentType, bytes: a.bytes } : a));
const resource = (max: number) =>
  fc.record({
    resourceType: fc.constantFrom('DocumentReference' as const, 'Patient' as const, 'Observation' as const),
    id: fc.stringMatching(/^[a-z0-9]{1,10}$/),
    atts: fc.array(att(max), { minLength: 0, maxLength: 4 }),
    extra: noise,
  });

const asAttachment = (a: Att, stored: boolean): Record<string, unknown> => ({
  contentType: a.contentType,
  ...(a.title !== undefined ? { title: a.title } : {}),
  data: a.bytes.toString('base64'),
  ...(stored ? { size: a.bytes.length, hash: sha1(a.bytes) } : {}),
});

/** The resource as a client writes it (id last, as Medplum answers); `stored(a)` adds what externalizing adds. */
function render(r: Res, stored: (a: Att) => boolean = () => false): Record<string, unknown> {
  const atts = r.atts.map((a) => asAttachment(a, stored(a)));
  const body: Record<string, unknown> =
    r.resourceType === 'DocumentReference'
      ? { resourceType: r.resourceType, status: 'current', content: atts.map((attachment) => ({ attachment })) }
      : r.resourceType === 'Patient'
        ? { resourceType: r.resourceType, photo: atts }
        : { resourceType: r.resourceType, status: 'final', code: { text: 'x' }, ...(atts[0] ? { valueAttachment: atts[0] } : {}) };
  return { ...body, extra: r.extra, id: r.id };
}
/** Observation carries one attachment only. */
const attsOf = (r: Res) => (r.resourceType === 'Observation' ? r.atts.slice(0, 1) : r.atts);

/** Externalizes each resource on its own (as a create would) and links its blobs to it. */
async function hold(e: Engine, rs: readonly Res[], minBytes: number, cut: readonly number[]): Promise<string[]> {
  const out: string[] = [];
  for (const r of rs) {
    const { text, ext } = await e.externalize(JSON.stringify(render(r)), { minBytes }, cut);
    await e.link(ext, `${r.resourceType}/${r.id}`);
    out.push(text);
  }
  return out;
}

const searchset = (entries: readonly string[]) =>
  `{"resourceType":"Bundle","type":"searchset","entry":[${entries.map((x) => `{"resource":${x}}`).join(',')}]}`;
/** Distinct ids: two resources with one id would be one owner. */
const distinct = (rs: Res[]) => rs.filter((r, i) => rs.findIndex((o) => o.resourceType === r.resourceType && o.id === r.id) === i);

t.test('externalize then inflate with an unlimited budget gives back the original plus size and hash', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(resource(3000), { minLength: 1, maxLength: 3 }).map(distinct),
      fc.integer({ min: 0, max: 2500 }),
      cuts,
      async (rs, minBytes, cut) => {
        const e = engine(t);
        const held = await hold(e, rs, minBytes, cut);
        const { text, report } = await e.inflate(searchset(held), {}, cut);
        // Empty data has nothing to store: it stays inline whatever the threshold.
        const stored = (a: Att) => a.bytes.length > 0 && a.bytes.length >= minBytes;
        const expected = { resourceType: 'Bundle', type: 'searchset', entry: rs.map((r) => ({ resource: render(r, stored) })) };
        t.same(JSON.parse(text), expected);
        t.notOk(text.includes(BLOB_EXTENSION_URL));
        t.equal(report.inflated, rs.flatMap(attsOf).filter(stored).length, 'every stored attachment came back from the store');
        t.equal(e.files().length, 2 * report.inflated, 'one content file and one metadata file per stored attachment');
      },
    ),
    { numRuns: RUNS },
  );
});

t.test('no budget is ever exceeded: each attachment is either its exact data or a link', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(resource(4000), { minLength: 1, maxLength: 3 }).map(distinct),
      fc.integer({ min: 0, max: 3000 }),
      fc.integer({ min: 0, max: 9000 }),
      fc.boolean(),
      cuts,
      async (rs, minBytes, budget, inflate, cut) => {
        const e = engine(t);
        const held = await hold(e, rs, minBytes, [65536]);
        const { text, report } = await e.inflate(searchset(held), { maxBytes: budget, inflate }, cut);
        const out = JSON.parse(text) as { entry: { resource: Record<string, any> }[] };
        let sent = 0;
        out.entry.forEach((x, i) => {
          const r = rs[i];
          const got: Record<string, any>[] =
            r.resourceType === 'DocumentReference'
              ? x.resource['content'].map((c: { attachment: unknown }) => c.attachment)
              : r.resourceType === 'Patient'
                ? x.resource['photo']
                : x.resource['valueAttachment']
                  ? [x.resource['valueAttachment']]
                  : [];
          attsOf(r).forEach((a, k) => {
            const g = got[k];
            if (g['data'] !== undefined) {
              const bytes = Buffer.from(g['data'], 'base64');
              t.ok(bytes.equals(a.bytes), 'data, when sent, is exact');
              sent += bytes.length;
              if (!inflate)
                t.ok(a.bytes.length < minBytes || a.bytes.length === 0, 'with inflation off, only data the upstream held inline');
            } else
              t.match(g['url'], new RegExp(`/${r.resourceType}/${r.id}/\\$binary-access-read\\?path=`), 'else a link to its own resource');
          });
        });
        t.ok(sent <= budget, `${sent} <= ${budget}`);
        t.equal(report.bytes, sent);
        t.same(e.spooled(), []);
      },
    ),
    { numRuns: RUNS },
  );
});

t.test('JSON without stored references passes unchanged, byte for byte, however it is cut', async (t) => {
  const e = engine(t);
  await fc.assert(
    fc.asyncProperty(fc.jsonValue({ maxDepth: 5 }), cuts, async (v, cut) => {
      const body = JSON.stringify({ resourceType: 'Basic', id: 'b', payload: v });
      const { text } = await e.inflate(body, {}, cut);
      t.equal(text, body);
    }),
    { numRuns: RUNS * 5 },
  );
  await fc.assert(
    fc.asyncProperty(resource(200), cuts, async (r, cut) => {
      // Inline attachments (under the threshold) are resources without stored references too.
      const body = JSON.stringify(render(r));
      t.equal((await e.inflate(body, {}, cut)).text, body);
      const { text } = await e.externalize(body, { minBytes: 1_000_000 }, cut);
      t.same(JSON.parse(text), JSON.parse(body), 'the write direction leaves it as it was, too');
    }),
    { numRuns: RUNS },
  );
});

t.test('chunk boundaries from 1 byte to 64 KiB give identical output, both directions', async (t) => {
  await fc.assert(
    fc.asyncProperty(resource(70_000), fc.integer({ min: 0, max: 2000 }), cuts, async (r, minBytes, cut) => {
      const e = engine(t);
      const body = JSON.stringify(render(r));
      const whole = await e.externalize(body, { minBytes }, [1 << 30]);
      const cutUp = await e.externalize(body, { minBytes }, cut);
      // Blob ids differ between runs; everything else must not.
      const ids = (s: string) => s.replace(/"valueString":"[a-z0-9-]{20,64}"/g, '"valueString":"ID"');
      t.equal(ids(cutUp.text), ids(whole.text));
      await e.link(whole.ext, `${r.resourceType}/${r.id}`);
      const a = await e.inflate(whole.text, { maxBytes: 50_000 }, [1 << 30]);
      const b = await e.inflate(whole.text, { maxBytes: 50_000 }, cut);
      t.equal(b.text, a.text);
    }),
    { numRuns: RUNS },
  );
});
