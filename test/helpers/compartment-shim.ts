// A HAPI-like shim (written for the fifth outside check of issue 12) in front of the Medplum upstream (test code), adding what HAPI JPA does
// and the in-memory router does not:
//  - compartment searches `Patient/{id}/{Type}?…` (HAPI: any search with the compartment's params),
//    answered as `{Type}?{param}=Patient/{id}&…` for each compartment param of the type (OR, deduplicated);
//  - inline match URL references in plain creates/updates (HAPI JPA `allowInlineMatchUrlReferences`,
//    on by default): a `"reference": "Type?criteria"` anywhere in a POST/PUT body is resolved by a
//    search; 0 matches → 400, more than one → 412, one → replaced by `Type/{id}`;
//  - Medplum's `_fields` (its alias of `_elements`) applied to `Patient/{id}/$everything`.
// Everything else is passed through unchanged. `log` records each request line received.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

type Resource = { resourceType: string; id: string; [k: string]: unknown };

const COMPARTMENT_PARAMS: Record<string, string[]> = {
  Observation: ['subject', 'performer'],
  Appointment: ['actor'],
  Group: ['member'],
  Encounter: ['subject'],
};

const MANDATORY = new Set(['resourceType', 'id', 'meta']);
function fields(r: Resource, list: string | null): Resource {
  if (!list) return r;
  const keep = new Set(list.split(',').map((e) => e.trim()));
  return Object.fromEntries(Object.entries(r).filter(([k]) => MANDATORY.has(k) || keep.has(k))) as Resource;
}

export async function startShim(t: { teardown(fn: () => unknown): void }, upUrl: string, log: string[] = []): Promise<string> {
  const target = new URL(upUrl);
  const base = target.pathname.replace(/\/$/, '');
  const get = async (path: string) => (await (await fetch(`${upUrl}/${path}`)).json()) as Record<string, any>;
  const send = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const oo = (code: string, msg: string) => ({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: msg }] });

  async function resolveInline(v: unknown): Promise<{ status: number; msg: string } | undefined> {
    if (Array.isArray(v)) {
      for (const x of v) {
        const e = await resolveInline(x);
        if (e) return e;
      }
      return undefined;
    }
    if (!v || typeof v !== 'object') return undefined;
    const o = v as Record<string, unknown>;
    for (const [k, x] of Object.entries(o)) {
      if (k === 'reference' && typeof x === 'string' && x.includes('?')) {
        const b = await get(x);
        const n = (b.entry ?? []).length;
        if (n === 0) return { status: 400, msg: `Invalid match URL "${x}" - No resources match this search` };
        if (n > 1) return { status: 412, msg: `Invalid match URL "${x}" - Multiple resources match this search` };
        o[k] = `${b.entry[0].resource.resourceType}/${b.entry[0].resource.id}`;
      } else {
        const e = await resolveInline(x);
        if (e) return e;
      }
    }
    return undefined;
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    log.push(`${req.method} ${req.url}`);
    const url = new URL(req.url ?? '/', 'http://x');
    const rel = url.pathname.startsWith(base) ? url.pathname.slice(base.length) : url.pathname;
    const seg = rel.split('/').filter(Boolean);
    const forward = (body?: string) => {
      const headers = body === undefined ? req.headers : { ...req.headers, 'content-length': String(Buffer.byteLength(body)) };
      const fwd = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      if (body === undefined) req.pipe(fwd);
      else fwd.end(body);
    };
    void (async () => {
      // Compartment search Patient/{id}/{Type}
      if (req.method === 'GET' && seg.length === 3 && seg[0] === 'Patient' && !seg[2].startsWith('$') && !seg[2].startsWith('_')) {
        const [, id, type] = seg;
        const params = COMPARTMENT_PARAMS[type] ?? ['patient'];
        const seen = new Map<string, unknown>();
        const entries: unknown[] = [];
        for (const p of params) {
          const q = new URLSearchParams(url.search);
          q.append(p, `Patient/${id}`);
          const b = await get(`${type}?${q.toString()}`);
          for (const e of b.entry ?? []) {
            const key = `${e.resource.resourceType}/${e.resource.id}`;
            if (!seen.has(key)) {
              seen.set(key, e);
              entries.push(e);
            }
          }
        }
        send(res, 200, { resourceType: 'Bundle', type: 'searchset', total: entries.length, entry: entries });
        return;
      }
      // Patient/{id}/$everything with Medplum's _fields applied
      if (req.method === 'GET' && seg.length === 3 && seg[0] === 'Patient' && seg[2] === '$everything') {
        const id = seg[1];
        const out: Resource[] = [(await get(`Patient/${id}`)) as Resource];
        const obs = await get(`Observation?subject=Patient/${id}`);
        out.push(...(obs.entry ?? []).map((e: { resource: Resource }) => e.resource));
        // referenced resources (derivedFrom, device), as servers add them
        for (const r of [...out]) {
          for (const d of [r['derivedFrom'] ?? [], r['device'] ?? []].flat() as { reference?: string }[]) {
            if (d.reference) out.push((await get(d.reference)) as Resource);
          }
        }
        const f = url.searchParams.get('_fields') ?? url.searchParams.get('_elements');
        send(res, 200, { resourceType: 'Bundle', type: 'searchset', entry: out.map((r) => ({ resource: fields(r, f) })) });
        return;
      }
      // Inline match URLs in single-resource creates/updates
      if ((req.method === 'POST' || req.method === 'PUT') && seg.length >= 1 && seg.length <= 2 && /^[A-Z]/.test(seg[0] ?? '')) {
        const parts: Buffer[] = [];
        for await (const c of req) parts.push(c as Buffer);
        const text = Buffer.concat(parts).toString();
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        if (body && typeof body === 'object') {
          const err = await resolveInline(body);
          if (err) {
            send(res, err.status, oo(err.status === 412 ? 'conflict' : 'processing', err.msg));
            return;
          }
          forward(JSON.stringify(body));
          return;
        }
        forward(text);
        return;
      }
      forward();
    })().catch((e: unknown) => send(res, 500, oo('exception', String(e))));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${target.pathname}`;
}
