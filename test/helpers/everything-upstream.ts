// The in-memory upstream has no Patient/$everything. This shim in front of it answers one the way
// servers do — the patient, resources of its compartment, and the resources those reference
// (other patients included) — and passes every other request through unchanged. With
// `ignorePatientPin`, it also plays a server that ignores `patient=` in a batch's entries (so their
// searchsets carry every patient's resources), for the answer guard to be seen holding. It also
// answers HAPI-style page links (`[base]?_getpages={id}&_getpagesoffset=…`) with a page of a
// stored search that reached Patients, Observations and Devices, and a `next` link.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FhirUpstream } from '../../src/demo/fhir-upstream.js';

type Resource = { resourceType: string; id: string; [k: string]: unknown };

export async function startEverythingShim(
  t: { teardown(fn: () => unknown): void },
  up: FhirUpstream,
  opts: { ignorePatientPin?: boolean } = {},
): Promise<string> {
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
  const page = async (): Promise<Resource[]> => {
    const out: Resource[] = [];
    for (const type of ['Patient', 'Observation', 'Device']) {
      const b = (await get(type)) as { entry?: { resource: Resource }[] };
      out.push(...(b.entry ?? []).map((e) => e.resource));
    }
    return out;
  };
  const searchset = (res: ServerResponse, resources: Resource[], link: unknown[] = []) => {
    const body = JSON.stringify({
      resourceType: 'Bundle',
      type: 'searchset',
      total: resources.length,
      link,
      entry: resources.map((resource) => ({ resource })),
    });
    res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const m = /\/Patient\/([^/?]+)\/\$everything/.exec(req.url ?? '');
    if (m && req.method === 'GET') {
      void everything(m[1]).then((resources) => searchset(res, resources));
      return;
    }
    const asked = new URL(req.url ?? '/', 'http://x');
    const pageId = asked.searchParams.get('_getpages');
    if (pageId !== null && req.method === 'GET') {
      const next = `http://${req.headers.host ?? ''}${target.pathname}?_getpages=${pageId}&_getpagesoffset=20&_count=20&_bundletype=searchset`;
      void page().then((resources) => searchset(res, resources, [{ relation: 'next', url: next }]));
      return;
    }
    const forward = (body?: string) => {
      const headers = body === undefined ? req.headers : { ...req.headers, 'content-length': String(Buffer.byteLength(body)) };
      const fwd = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      if (body === undefined) req.pipe(fwd);
      else fwd.end(body);
    };
    const base = (path: string) => path.replace(/\/+$/, '');
    const batch = req.method === 'POST' && base(new URL(req.url ?? '/', 'http://x').pathname) === base(target.pathname);
    if (!opts.ignorePatientPin || !batch) return forward();
    // Test code: a batch is small, and is read whole to take the pins out.
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const batch = JSON.parse(Buffer.concat(parts).toString()) as { entry?: { request: { url: string } }[] };
      for (const e of batch.entry ?? []) e.request.url = e.request.url.replace(/([?&])patient=[^&]*&?/, '$1');
      forward(JSON.stringify(batch));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${target.pathname}`;
}
