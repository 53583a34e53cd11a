// The screen that follows one string for parts in order, keeping only a short tail.
import t from 'tap';
import fc from 'fast-check';
import { TextScreen } from '../../src/json/text-screen.js';

const PARTS = ['/_file/', '?'];
const BREAKS = /\s/;

t.test('whole strings: every part, in order', async (t) => {
  t.ok(TextScreen.holds(PARTS, BREAKS, 'https://gw/fhir/_file/Binary/1/b?sig=x'));
  t.ok(TextScreen.holds(PARTS, BREAKS, '/_file/?'));
  t.notOk(TextScreen.holds(PARTS, BREAKS, '?/_file/'), 'out of order');
  t.notOk(TextScreen.holds(PARTS, BREAKS, '/_file'), 'a part cut short');
  t.notOk(TextScreen.holds(PARTS, BREAKS, '/_fil/e/?'));
  t.notOk(TextScreen.holds(PARTS, BREAKS, ''));
  t.notOk(TextScreen.holds(PARTS, BREAKS, 'files in /_file/ here. OK?'), 'a break between the parts: two tokens');
  t.ok(TextScreen.holds(PARTS, BREAKS, 'files in /_file/ here. OK? /_file/x?y'), 'a later token holds both');
  for (const encoded of [
    'viewer.html?file=https%3A%2F%2Fgw%2Ffhir%2F_file%2FBinary%2F1%2Fb%3Fsv%3D1',
    'https%253A%252F%252Fgw%252F_file%252Fb%253Fsig', // encoded twice
    '<a href="https://gw/_file/b&#63;sv=1">',
    '<a href="https://gw/&#x5F;file&sol;b&quest;sv=1">',
    'https://gw/_file/b&amp;#63;sv', // the reference itself escaped
  ])
    t.ok(TextScreen.holds(PARTS, BREAKS, encoded), encoded);
  t.notOk(TextScreen.holds(PARTS, BREAKS, '100%25 of /_file/ done&amp; ok'), 'decoded, still no query in the token');
});

t.test('pieces: the same answer as the whole string, however it is cut; reset starts again (property)', async (t) => {
  const alphabet = fc.constantFrom('/', '_', 'f', 'i', 'l', 'e', '?', 'x', ' ', '%', '2', 'F', '3', '&', '#', '6', ';');
  fc.assert(
    fc.property(fc.array(fc.string({ unit: alphabet, maxLength: 6 }), { maxLength: 12 }), (pieces) => {
      const screen = new TextScreen(PARTS, BREAKS);
      screen.piece('/_file/?'); // a previous string that matched
      screen.reset();
      let seen = false;
      for (const p of pieces) seen = screen.piece(p) || seen;
      seen = screen.end() || seen;
      return seen === TextScreen.holds(PARTS, BREAKS, pieces.join(''));
    }),
    { numRuns: 2000 },
  );
  t.pass();
});
