// A deliberately trivial FHIR upstream for proxy benchmarks: one canned Patient, answered from
// memory, so the proxies (not the FHIR server) are what the numbers measure.
import http from 'node:http';

const patient = JSON.stringify({
  resourceType: 'Patient',
  id: 'example',
  meta: { versionId: '1', lastUpdated: '2026-11-24T00:00:00Z' },
  name: [{ family: 'Chalmers', given: ['Peter', 'James'] }],
  gender: 'male',
  birthDate: '1974-12-25',
});
const body = Buffer.from(patient);
const server = http.createServer((req, res) => {
  res.writeHead(200, {
    'content-type': 'application/fhir+json; charset=utf-8',
    'content-length': body.length,
    etag: 'W/"1"',
    'last-modified': 'Tue, 24 Nov 2026 00:00:00 GMT',
  });
  res.end(body);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
