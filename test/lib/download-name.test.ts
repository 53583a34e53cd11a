// Download names in any script, and the Content-Disposition that carries them (RFC 6266, RFC 8187).
import fc from 'fast-check';
import t from 'tap';
import { contentDisposition, isDownloadName } from '../../src/lib/download-name.js';

t.test('isDownloadName: letters and digits of any script; nothing that quotes, paths, controls, hides or reorders', async (t) => {
  const accepted = ['report.pdf', 'Befund Müller (1).pdf', '検査結果.pdf', 'Ωμέγα_2.png', 'cafe\u0301.pdf', 'a', 'x'.repeat(128)];
  for (const ok of [...accepted, 'דוח רפואי.pdf', 'تقرير.pdf', '_draft.txt', '(1) scan.png']) t.ok(isDownloadName(ok), ok);
  const refused: [string, string][] = [
    ['', 'empty'],
    ['x'.repeat(129), 'longer than 128'],
    ['a"b.pdf', 'a quote'],
    ['a/b.pdf', 'a slash'],
    ['a\\b.pdf', 'a backslash'],
    ['a;b.pdf', 'a parameter separator'],
    ['a%41.pdf', 'a percent sign (would read as an escape)'],
    ["a'b.pdf", "an apostrophe (RFC 8187's delimiter)"],
    ['a\r\nSet-Cookie: x', 'a line break'],
    ['a\tb', 'a tab'],
    ['\u202Efdp.exe', 'a right-to-left override (shows as exe.pdf)'],
    ['a\u200Bb.pdf', 'a zero-width space'],
    ['a\u00A0b.pdf', 'a no-break space'],
    ['a\u3164b.pdf', 'a Hangul filler (an invisible letter)'],
    ['a\uFE0Fb.pdf', 'a variation selector'],
    ['a\u034Fb.pdf', 'a combining grapheme joiner'],
    ['\u0301.pdf', 'a leading combining mark (its fallback would be the hidden `.pdf`)'],
    ['a\u0301\u0302\u0303\u0304.pdf', 'a run of four marks'],
    ['.hidden', 'a leading dot'],
    [' report.pdf', 'a leading space'],
    ['report.pdf.', 'a trailing dot'],
    ['report.pdf ', 'a trailing space'],
    ['-rf', 'a leading hyphen'],
    ['א pdf.א.exe', 'right-to-left parts around dots (can show as exe.א.pdf)'],
    ['דוח.פדף', 'a right-to-left extension'],
  ];
  for (const [name, why] of refused) t.notOk(isDownloadName(name), why);
});

t.test('contentDisposition: ASCII names quoted as they are; others in filename* with an ASCII fallback', async (t) => {
  t.equal(contentDisposition('attachment', undefined), 'attachment');
  t.equal(contentDisposition('inline', 'report (1).pdf'), 'inline; filename="report (1).pdf"');
  t.equal(
    contentDisposition('attachment', 'Befund Müller (1).pdf'),
    `attachment; filename="Befund Muller (1).pdf"; filename*=UTF-8''Befund%20M%C3%BCller%20%281%29.pdf`,
    'accents dropped in the fallback; parentheses escaped in filename* (not attr-chars)',
  );
  t.equal(contentDisposition('attachment', '検査.pdf'), `attachment; filename="__.pdf"; filename*=UTF-8''%E6%A4%9C%E6%9F%BB.pdf`);
  // U+FDFA decomposes to 18 characters: the fallback stays at most 128.
  const long = contentDisposition('attachment', '\uFDFA'.repeat(100));
  t.match(long, /^attachment; filename="[A-Za-z0-9 ._()-]{128}"; filename\*=UTF-8''/);
});

t.test('every valid name gives an ASCII header whose filename* decodes to the name', async (t) => {
  const char = fc.oneof(
    fc.constantFrom(' ', '.', '_', '-', '(', ')', 'a', 'Z', '7'),
    fc.constantFrom('é', 'ü', 'ß', 'Ø', 'я', 'λ', '検', '査', '한', 'ا', '٣', '\u0301', '𝔸'),
  );
  fc.assert(
    fc.property(fc.array(char, { minLength: 1, maxLength: 40 }), (chars) => {
      const name = chars.join('');
      if (!isDownloadName(name)) return;
      const header = contentDisposition('attachment', name);
      if (!/^[\x20-\x7e]*$/.test(header)) throw new Error(`not ASCII: ${header}`);
      const m = /^attachment; filename="([A-Za-z0-9 ._()-]*)"(?:; filename\*=UTF-8''([A-Za-z0-9!#$&+\-.^_`|~%]+))?$/.exec(header);
      if (!m) throw new Error(`unexpected shape: ${header}`);
      if (m[2] === undefined ? m[1] !== name : decodeURIComponent(m[2]) !== name) throw new Error(`does not carry ${name}: ${header}`);
    }),
  );
  t.pass('checked');
});
