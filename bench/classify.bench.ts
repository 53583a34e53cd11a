/**
 * Micro-benchmark for the route classifier (not a test: no assertions, timing varies by machine).
 * Run: node --import=tsx bench/classify.bench.ts
 * Target: well under 2 µs per `GET /fhir/Patient/123` (it runs on every proxied request).
 */
import { classifyRequest } from '../src/fhir/classify.js';

const headers = {
  host: 'gateway.example',
  'user-agent': 'bench/1.0',
  accept: 'application/fhir+json',
  authorization: 'Bearer x',
  'accept-encoding': 'gzip',
  connection: 'keep-alive',
};

const cases: ReadonlyArray<readonly [string, string]> = [
  ['GET', '/fhir/Patient/123'],
  ['GET', '/fhir/Observation?patient=Patient/123&code=http://loinc.org|1234-5&_count=50'],
  ['GET', '/fhir/Patient/123/_history/4/$meta'],
  ['POST', '/fhir'],
];

const N = 2_000_000;
for (const [method, url] of cases) {
  const input = { method, url, basePath: '/fhir', headers };
  let sink = 0;
  for (let i = 0; i < 200_000; i++) sink += classifyRequest(input).path.length; // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < N; i++) sink += classifyRequest(input).path.length;
  const ns = Number(process.hrtime.bigint() - start) / N;
  console.log(`${method} ${url}: ${ns.toFixed(0)} ns/op${sink === -1 ? '' : ''}`);
}
