// A tap plugin in place of @tapjs/typescript (ts-node): the same job, loading the TypeScript
// tests and sources, but from the JavaScript `make typecheck` already emitted into .build/
// (tsconfig.test.json). ts-node transpiled every source file again in each of the ~230 test
// processes, ~3 s per process before its first test; reading tsc's output costs none of that.
// A file edited since that build is transpiled on the spot, so `npx tap test/x.test.ts` stays
// right without a rebuild. `preload` puts this loader first on node's command line, innermost
// of the module hooks, so tap's coverage hook (processinfo) sees the JavaScript and its source
// map, exactly as it saw ts-node's.
exports.importLoader = 'tap-prebuilt-ts/register';
exports.preload = true;
exports.testFileExtensions = ['ts'];
