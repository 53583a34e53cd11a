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
});

t.test('pieces: the same answer as the whole string, however it is cut; reset starts again (property)', async (t) => {
  const alphabet = fc.constantFrom('/', '_', 'f', 'i', 'l', 'e', '?', 'x', ' ');
  fc.assert(
    fc.property(fc.array(fc.string({ unit: alphabet, maxLength: 6 }), { maxLength: 12 }), (pieces) => {
      const screen = new TextScreen(PARTS, BREAKS);
      screen.piece('/_file/?'); // a previous string that matched
      screen.reset();
      let seen = false;
      for (const p of pieces) seen = screen.piece(p) || seen;
      return seen === TextScreen.holds(PARTS, BREAKS, pieces.join(''));
    }),
    { numRuns: 2000 },
  );
  t.pass();
});
