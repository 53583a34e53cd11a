// The in-memory upstream has no Patient/$everything. This shim in front of it answers one the way
// servers do — the patient, resources of its compartment, and the resources those reference
// (other patients included) — and passes every other request through unchanged.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FhirUpstream } from '../../src/demo/fhir-upstream.js';

type Resource = { resourceType: string; id: string; [k: string]: unknown };

export async function startEverythingShim(t: { teardown(fn: () => unknown): void }, up: FhirUpstream): Promise<string> {
  const target = new URL(up.url);
  const get = async (path: string) => (await (await fetch(`${up.url}/${path}`)).json()) as Record<string, unknown>;
  const everything = async (id: string): Promise<Resource[]> => {
    const out: Resource[] = [(await get(`Patient/${id}`)) as Resource];
    for (const search of [`Observation?subject=Patient/${id}`, `Account?patient=Patient/${id}`]) {
      const b = (await get(search)) as { entry?: { resource: Resource }[] };
      out.push(...(b.entry ?? []).map((e) => e.resource));
    }
    // Referenced patients come along, as a server's "referenced resources" do.
    for (const r of [...out]) {
      for (const s of [r['subject'] ?? []].flat() as { reference?: string }[]) {
        const ref = s.reference;
        if (ref?.startsWith('Patient/') && ref !== `Patient/${id}`) out.push((await get(ref)) as Resource);
      }
    }
    return out;
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const m = /\/Patient\/([^/?]+)\/\$everything/.exec(req.url ?? '');
    if (m && req.method === 'GET') {
      void everything(m[1]).then((resources) => {
        const body = JSON.stringify({
          resourceType: 'Bundle',
          type: 'searchset',
          total: resources.length,
          entry: resources.map((resource) => ({ resource })),
        });
        res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
      return;
    }
    const fwd = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    req.pipe(fwd);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${target.pathname}`;
}
