// Reads the raw TAP of a test run and prints what a person wants to see: failures in full, one
// line per test file, and a last line `N passed, N failed` that counts tests (t.test blocks
// that assert), not assertions. Exits non-zero when anything failed or the TAP is incomplete.
import { createReadStream } from 'node:fs';
import { Parser } from 'tap-parser';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: node test/tools/report.mjs RESULTS.tap\n');
  process.exit(2);
}

/** One test file's tally. */
const files = [];
const failures = [];

/**
 * depth 1: a test file; deeper: a subtest. A test is a subtest without subtests of its own (a
 * file without any counts as one test); a subtest with subtests that fails by an assertion of
 * its own counts as a failed test too.
 */
function attach(parser, depth, path, tally) {
  let children = 0;
  const childNames = new Set();
  let ownFailure = false;
  parser.on('child', (child) => {
    children++;
    const name = child.name;
    childNames.add(name);
    const next = depth === 0 ? { name, passed: 0, failed: 0, ms: 0 } : tally;
    if (depth === 0) files.push(next);
    attach(child, depth + 1, depth === 0 ? [] : [...path, name], next);
  });
  parser.on('assert', (res) => {
    if (res.ok || res.todo || res.skip) return;
    if (childNames.has(res.name)) return;
    ownFailure = true;
    if (depth > 0) failures.push({ file: tally.name, path: [...path, res.name].join(' > '), diag: res.diag });
  });
  parser.on('complete', (res) => {
    if (depth === 0) return;
    if (depth === 1 && typeof res.time === 'number') tally.ms = res.time;
    if (children === 0 || (ownFailure && depth > 1)) {
      if (res.ok && !ownFailure) tally.passed++;
      else tally.failed++;
    }
    if (depth === 1 && !res.ok && tally.failed === 0) tally.failed++;
  });
}

const root = new Parser();
attach(root, 0, [], undefined);
createReadStream(file).pipe(root);
root.on('complete', () => {
  for (const f of files) {
    const mark = f.failed ? 'FAIL' : 'ok  ';
    const secs = f.ms ? `, ${(f.ms / 1000).toFixed(1)} s` : '';
    process.stdout.write(`${mark} ${f.name} (${f.passed + f.failed} tests${secs})\n`);
  }
  for (const f of failures) {
    process.stdout.write(`\nFAILED ${f.file}: ${f.path}\n`);
    if (f.diag) process.stdout.write(`${JSON.stringify(f.diag, null, 2)}\n`);
  }
  const passed = files.reduce((n, f) => n + f.passed, 0);
  // The raw TAP file has no top-level plan (tap writes that to its reporter only): failures are counted per file.
  const failed = files.reduce((n, f) => n + f.failed, 0);
  process.stdout.write(`\n${passed} passed, ${failed} failed\n`);
  process.exitCode = failed ? 1 : 0;
});
