#!/usr/bin/env node
// Thin launcher: the gateway is compiled to dist/ by `npm run build` (or `make build`).
import('../dist/app/cli.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist')) {
    process.stderr.write('fhir-binary-gateway: not built yet; run `make build` (or `npm run build`) first\n');
    process.exit(1);
  }
  throw err;
});
