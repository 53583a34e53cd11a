import { randomUUID } from 'node:crypto';
import { DICOM_HEADER_BYTES, dicomFacts } from '../content/dicom.js';
import { allowed, canonical, essence } from '../content/media-type.js';
import { GatewayError } from '../errors/catalogue.js';
import { storeFailure } from '../errors/map.js';
import { BLOB_EXTENSION_URL, blobExtension } from '../fhir/blob-reference.js';
import { contentLink, FILE_SEGMENT, holdsSignedFileUrl, parseContentLink } from '../fhir/content-link.js';
import type { Interaction } from '../fhir/interaction.js';
import { mayNamePatient, PATIENT_COMPARTMENT_PATHS, referencedPatient } from '../fhir/patient-compartment-elements.js';
import { noteBlob } from '../lib/blob-events.js';
import type { Exchange } from '../security/exchange.js';
import type { EffectiveRule } from '../security/policy.js';
import { checkRule } from '../security/reach.js';
import { grantsCreateOf, missingScopes } from '../security/scopes.js';
import type { BlobInfo, BlobStore } from '../storage/blob-store.js';
import { FHIR_JSON, MAX_RESOURCE_BYTES, readJson } from '../upstream/client.js';
import type { UpstreamResources } from '../binary/upstream-resources.js';
import { STORAGE_PATH_PREFIX, targetTypeOf, uploaderOf } from './files.js';

export interface BindDeps {
  readonly store: BlobStore;
  readonly resources: UpstreamResources;
  readonly publicBase: string;
}

type Json = Record<string, unknown>;
type Bindable = 'DocumentReference' | 'Media';

/** DICOM's code system for modalities (Media.modality). */
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
/** A file an attachment names, and where that attachment is. */
interface Named {
  readonly attachment: Json;
  readonly path: string;
  readonly info: BlobInfo;
}

const FILE_ID = /^[a-z0-9-]{1,64}$/;
/** A bind claim older than this was left by a request that died: taken over. */
const BIND_CLAIM_MS = 10 * 60_000;
/** Members a resource written here may not have: content comes by upload only, and nothing may hide a resource or a search. */
const REFUSED_MEMBERS = new Set(['contained', 'data', '_data']);

/**
 * `createDocumentReference` / `createMedia` (docs/graphql.md): a resource whose attachments name
 * files the caller uploaded for the resource's subject, written to the FHIR server with a
 * Provenance in one transaction. Each attachment gets the stored file's reference, size, SHA-1
 * hash and type; a hash the client gave must be the file's. The files are linked to the new
 * resource once the transaction is accepted; a refused transaction leaves them pending (still the
 * uploader's, to bind again).
 */
export class FileBinding {
  constructor(private readonly d: BindDeps) {}

  async create(type: Bindable, input: unknown, x: Exchange): Promise<Json> {
    const interaction: Interaction = { kind: 'create', resourceType: type, method: 'POST', path: type, query: '' };
    const rule = x.settings.policy.ruleFor(interaction);
    checkRule({ ...x.checkInput(), interaction }, x.settings, rule);
    const scope = x.settings.config.graphql.writeScope;
    if (!x.principal.scopes || missingScopes(x.principal.scopes, [scope]).length > 0)
      throw new GatewayError('INSUFFICIENT_SCOPE', `creating resources here needs the scope ${scope}`);
    if (rule.require.smart && !grantsCreateOf(x.principal.scopes, type, x.principal.patient))
      throw new GatewayError(
        'INSUFFICIENT_SCOPE',
        `creating a ${type} needs an unrestricted create scope on it (user/${type}.c, or patient/${type}.c with a launch patient)`,
      );

    const resource = this.checked(type, input);
    const subject = (resource['subject'] as { reference?: unknown } | undefined)?.reference;
    if (typeof subject !== 'string')
      throw new GatewayError('BAD_REQUEST', `the ${type} names its subject (subject.reference, e.g. Patient/123)`);
    this.patientOnly(type, resource, subject, x);
    const found = await this.files(type, resource, x);
    if (found.length === 0)
      throw new GatewayError('BAD_REQUEST', `the ${type} has no attachment naming an uploaded file (its url: the file's storagePath)`);
    // One bind of a file at a time, across replicas (the store's exclusive claim): two requests
    // naming one file would otherwise both pass the checks below and link it twice.
    const claimed: string[] = [];
    try {
      for (const n of found) {
        if (!(await this.claim(n.info.id, x.ctx.id)))
          throw new GatewayError('FILE_NOT_BINDABLE', `file ${n.info.id} is being bound by another request`);
        claimed.push(n.info.id);
      }
      // Read again under the claim: what was checked is what is bound.
      const named = await Promise.all(found.map(async (n) => ({ ...n, info: (await this.head(n.info.id)) ?? n.info })));
      return await this.bind(type, resource, subject, named, x, rule);
    } finally {
      for (const id of claimed) await this.d.store.unclaim(`bind-${id}`).catch(() => undefined);
    }
  }

  /** A bind claim; one left behind by a request that died (older than BIND_CLAIM_MS) is taken over. */
  private async claim(id: string, holder: string): Promise<boolean> {
    const name = `bind-${id}`;
    try {
      if (await this.d.store.claim(name, holder)) return true;
      const old = (await this.d.store.claims()).find((c) => c.name === name);
      if (!old || Date.now() - Date.parse(old.at) < BIND_CLAIM_MS) return false;
      await this.d.store.unclaim(name);
      return await this.d.store.claim(name, holder);
    } catch (err) {
      throw storeFailure(err);
    }
  }

  private async head(id: string): Promise<BlobInfo | undefined> {
    try {
      return await this.d.store.head(id);
    } catch (err) {
      throw storeFailure(err);
    }
  }

  private async bind(
    type: Bindable,
    resource: Json,
    subject: string,
    named: Named[],
    x: Exchange,
    createRule: EffectiveRule,
  ): Promise<Json> {
    const by = uploaderOf(x);
    for (const n of named) {
      const info = n.info;
      // Only the uploader's own files, never bound, for this very subject: a file is one caller's, for one entity.
      if (info.upload?.by !== by || info.state !== 'pending' || info.owner !== undefined)
        throw new GatewayError('FILE_NOT_BINDABLE', `file ${info.id} is not an unbound upload of yours`);
      if (info.upload.for !== subject)
        throw new GatewayError('FILE_NOT_BINDABLE', `file ${info.id} was uploaded for ${info.upload.for}, not for ${subject.slice(0, 80)}`);
      // The upload was authorized, size-limited and checked under the rule of the type its content
      // binds to (targetTypeOf): it binds to that type only.
      const uploadedFor = targetTypeOf(info.contentType);
      if (uploadedFor !== type)
        throw new GatewayError(
          'FILE_MISMATCH',
          `file ${info.id} (${info.contentType}) was uploaded to be bound to a ${uploadedFor}: use create${uploadedFor}`,
        );
      if (!info.upload.override && !allowed(info.contentType, x.settings.policy.allowedTypes(type)))
        throw new GatewayError('UNSUPPORTED_MEDIA', `${info.contentType} is not allowed for ${type} (content.allowedTypes.${type})`);
      this.fill(n);
    }
    if (type === 'Media' && canonical(named[0].info.contentType) === 'application/dicom') await this.dicom(resource, named[0].info);
    // A crash after the upstream answered leaves the files pending with what they were written
    // for: the sweeper asks the upstream about them (reconcile), as for any write.
    for (const n of named)
      await this.d.store.setMeta(n.info.id, { intent: type }).catch((err: unknown) => Promise.reject(storeFailure(err)));

    let created: Awaited<ReturnType<FileBinding['transaction']>>;
    try {
      // Sent under the create rule (its forwardAuthorization), not the GraphQL request's.
      created = await this.transaction(x.withRule(createRule), type, resource);
    } catch (err) {
      // Refused (or no answer): the files stay the uploader's unbound uploads, with their temporary
      // retention — unless the FHIR server may hold them (no answer), where the intent lets the
      // sweeper ask it.
      if (err instanceof GatewayError && err.status < 500)
        for (const n of named) await this.d.store.setMeta(n.info.id, { intent: null }).catch(() => undefined);
      throw err;
    }
    const owner = `${type}/${created.id}`;
    for (const n of named) {
      try {
        await this.d.store.setMeta(n.info.id, { state: 'linked', owner });
      } catch (err) {
        throw storeFailure(err);
      }
      noteBlob(x.ctx, { action: 'link', blob: n.info.id, resource: owner });
    }
    return this.answer(type, resource, created, named);
  }

  /**
   * A patient's token writes only into its patient's compartment: the subject, and every element
   * that places the resource in a patient's compartment (DocumentReference.author too), name that
   * patient or no patient at all.
   */
  private patientOnly(type: Bindable, resource: Json, subject: string, x: Exchange): void {
    const patient = x.principal.patient;
    if (patient === undefined) return;
    const refused = () => new GatewayError('INSUFFICIENT_SCOPE', `a patient's token writes resources for Patient/${patient} only`);
    if (referencedPatient(subject) !== patient) throw refused();
    for (const path of PATIENT_COMPARTMENT_PATHS[type] ?? []) {
      let values: unknown[] = [resource];
      for (const step of path.split('.')) values = values.flatMap((v) => (v && typeof v === 'object' ? [(v as Json)[step]] : [])).flat();
      for (const v of values) {
        const ref = (v as { reference?: unknown } | null)?.reference;
        if (typeof ref === 'string' && mayNamePatient(ref) && referencedPatient(ref) !== patient) throw refused();
      }
    }
  }

  /** The resource as sent: an object of the type, with nothing the gateway could not check. */
  private checked(type: Bindable, input: unknown): Json {
    if (typeof input !== 'object' || input === null || Array.isArray(input))
      throw new GatewayError('BAD_REQUEST', 'resource must be a JSON object');
    const given = (input as Json)['resourceType'];
    if (given !== undefined && given !== type) throw new GatewayError('BAD_REQUEST', `resource must be a ${type}`);
    // resourceType first, as FHIR servers write it: a read's streaming rewrite knows the type
    // before it meets an attachment (it inlines content only for a type the reader may read).
    const resource: Json = { resourceType: type, ...(input as Json) };
    if (resource['id'] !== undefined) throw new GatewayError('BAD_REQUEST', 'a created resource has no id yet');
    const walk = (v: unknown, depth: number): void => {
      if (depth > 32) throw new GatewayError('BAD_REQUEST', 'resource is nested too deeply');
      if (typeof v === 'string') {
        if (v === BLOB_EXTENSION_URL) throw new GatewayError('BAD_REQUEST', 'blob references are written by the gateway only');
        // Content as a URL passes none of the checks a file gets; a link to content the gateway
        // stores for another resource would be stored as a link to content this one does not hold.
        if (/^\s*data:/i.test(v)) throw new GatewayError('BAD_REQUEST', 'a data: URL is not taken: upload the content (uploadFile)');
        if (parseContentLink(this.d.publicBase, v))
          throw new GatewayError('BAD_REQUEST', "a link to another resource's stored content is not taken: upload the content");
        return;
      }
      if (Array.isArray(v)) return v.forEach((e) => walk(e, depth + 1));
      if (typeof v !== 'object' || v === null) return;
      for (const [k, e] of Object.entries(v)) {
        if (REFUSED_MEMBERS.has(k))
          throw new GatewayError('BAD_REQUEST', `'${k}' is not taken here: content comes by uploadFile, resources one at a time`);
        // A conditional reference is a search the server runs for the writer (rewrite/externalize.ts).
        if (k === 'reference' && typeof e === 'string' && e.includes('?'))
          throw new GatewayError('BAD_REQUEST', 'a conditional reference (Type?criteria) is not taken here');
        walk(e, depth + 1);
      }
    };
    walk(resource, 0);
    return resource;
  }

  /** The attachments whose url names an uploaded file (its storagePath, or the signed URL uploadFile gave). */
  private async files(type: Bindable, resource: Json, x: Exchange): Promise<Named[]> {
    const attachments: { attachment: Json; path: string }[] = [];
    if (type === 'DocumentReference') {
      const content = resource['content'];
      if (!Array.isArray(content)) throw new GatewayError('BAD_REQUEST', 'DocumentReference.content is a list');
      content.forEach((c, i) => {
        const a = (c as { attachment?: unknown } | null)?.attachment;
        if (typeof a !== 'object' || a === null || Array.isArray(a))
          throw new GatewayError('BAD_REQUEST', `content[${i}].attachment is required`);
        attachments.push({ attachment: (c as { attachment: Json }).attachment, path: `DocumentReference.content[${i}].attachment` });
      });
    } else {
      const a = resource['content'];
      if (typeof a !== 'object' || a === null || Array.isArray(a)) throw new GatewayError('BAD_REQUEST', 'Media.content is an attachment');
      attachments.push({ attachment: a as Json, path: 'Media.content' });
    }
    const out: Named[] = [];
    const seen = new Set<string>();
    for (const { attachment, path } of attachments) {
      const id = fileIdOf(attachment['url'], this.d.publicBase);
      if (id === undefined) throw new GatewayError('BAD_REQUEST', `${path}.url names no uploaded file (use its storagePath)`);
      if (seen.has(id)) throw new GatewayError('BAD_REQUEST', `file ${id} is named twice`);
      seen.add(id);
      let info: BlobInfo | undefined;
      try {
        info = await this.d.store.head(id);
      } catch (err) {
        throw storeFailure(err);
      }
      // Another caller's file is as absent as a missing one.
      if (!info || info.upload?.by !== uploaderOf(x)) throw new GatewayError('NOT_FOUND', `no file of yours with id ${id}`);
      out.push({ attachment, path, info });
    }
    // Anything else shaped like a signed URL is refused, as in any write (the files' own URLs are replaced below).
    for (const { attachment } of attachments) delete attachment['url'];
    if (holdsSignedFileUrl(JSON.stringify(resource)))
      throw new GatewayError('BAD_REQUEST', 'the resource holds a signed file URL of this gateway: it is never stored in a resource');
    return out;
  }

  /** The attachment as stored: the file's reference, size, SHA-1 and type; a hash or type the client gave must be the file's. */
  private fill(n: Named): void {
    const a = n.attachment;
    const info = n.info;
    const hash = a['hash'];
    if (hash !== undefined) {
      const ok =
        typeof hash === 'string' &&
        (hash.toLowerCase().startsWith('sha256:') ? hash.slice(7).toLowerCase() === info.sha256 : hash === info.sha1);
      if (!ok) throw new GatewayError('FILE_MISMATCH', `${n.path}.hash is not the uploaded file's (sha256:<hex>, or R4's base64 SHA-1)`);
    }
    const declared = a['contentType'];
    if (declared !== undefined && (typeof declared !== 'string' || essence(declared) !== info.contentType))
      throw new GatewayError('FILE_MISMATCH', `${n.path}.contentType is not the uploaded file's (${info.contentType})`);
    a['contentType'] = info.contentType;
    a['size'] = info.size;
    a['hash'] = info.sha1;
    a['_data'] = { extension: [blobExtension({ id: info.id, sha256: info.sha256 })] };
  }

  /**
   * A DICOM Media takes height, width and frames from the file's header (and its modality and
   * device where the client gave none); values the client gave must be the header's.
   */
  private async dicom(resource: Json, info: BlobInfo): Promise<void> {
    const chunks: Buffer[] = [];
    try {
      const got = await this.d.store.get(info.id, { start: 0, end: Math.min(info.size, DICOM_HEADER_BYTES) - 1 });
      for await (const c of got.body) chunks.push(c as Buffer);
    } catch (err) {
      throw storeFailure(err);
    }
    const facts = dicomFacts(Buffer.concat(chunks));
    for (const [key, value] of [
      ['height', facts.rows],
      ['width', facts.columns],
      ['frames', facts.frames],
    ] as const) {
      if (value === undefined) continue;
      if (resource[key] !== undefined && resource[key] !== value)
        throw new GatewayError(
          'FILE_MISMATCH',
          `Media.${key} is ${String(resource[key]).slice(0, 16)}, the file's DICOM header says ${value}`,
        );
      resource[key] = value;
    }
    if (facts.modality && resource['modality'] === undefined) resource['modality'] = { coding: [{ system: DCM, code: facts.modality }] };
    else if (facts.modality) {
      // A modality in DICOM's own code system (or with none) is the header's; other systems cannot be compared.
      const codings = (resource['modality'] as { coding?: unknown } | null)?.coding;
      for (const c of Array.isArray(codings) ? (codings as { system?: unknown; code?: unknown }[]) : []) {
        if ((c.system === undefined || c.system === DCM) && c.code !== undefined && c.code !== facts.modality)
          throw new GatewayError(
            'FILE_MISMATCH',
            `Media.modality is ${String(c.code).slice(0, 16)}, the file's DICOM header says ${facts.modality}`,
          );
      }
    }
    if (facts.deviceSerial && resource['device'] === undefined)
      resource['device'] = { identifier: { value: facts.deviceSerial }, ...(facts.deviceModel ? { display: facts.deviceModel } : {}) };
  }

  /** The resource and its Provenance in one transaction; the created resource's id and version. */
  private async transaction(
    x: Exchange,
    type: Bindable,
    resource: Json,
  ): Promise<{ id: string; versionId: string | undefined; lastUpdated: string | undefined; provenance: string | undefined }> {
    const full = `urn:uuid:${randomUUID()}`;
    const claims = x.principal.token?.claims ?? {};
    const fhirUser = typeof claims['fhirUser'] === 'string' ? claims['fhirUser'] : undefined;
    // fhirUser may be absolute (https://…/Practitioner/456): its relative tail is the reference.
    const fhirUserRef = fhirUser?.replace(/^.*\/(?=[A-Z][A-Za-z]+\/[^/]+$)/, '');
    const agentWho =
      fhirUserRef !== undefined && /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(fhirUserRef)
        ? { reference: fhirUserRef }
        : {
            identifier: {
              ...(typeof claims['iss'] === 'string' ? { system: claims['iss'] } : {}),
              value: uploaderOf(x).split('#').slice(1).join('#'),
            },
          };
    const provenance = {
      resourceType: 'Provenance',
      target: [{ reference: full }],
      recorded: new Date().toISOString(),
      activity: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'CREATE', display: 'create' }] },
      agent: [
        {
          type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' }] },
          who: agentWho,
        },
      ],
    };
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: full, resource, request: { method: 'POST', url: type } },
        { resource: provenance, request: { method: 'POST', url: 'Provenance' } },
      ],
    };
    const body = Buffer.from(JSON.stringify(bundle));
    const up = await this.d.resources.send(
      x,
      'POST',
      '/',
      { 'content-type': FHIR_JSON, 'content-length': String(body.length), accept: FHIR_JSON },
      body,
    );
    const answer = (await readJson(up, MAX_RESOURCE_BYTES).catch(() => undefined)) as
      | {
          entry?: {
            response?: { status?: unknown; location?: unknown; etag?: unknown; lastModified?: unknown };
            resource?: { meta?: { versionId?: unknown; lastUpdated?: unknown } };
          }[];
          issue?: unknown;
        }
      | undefined;
    if ((up.statusCode ?? 500) >= 300) {
      const status = up.statusCode ?? 502;
      throw new GatewayError(
        status >= 500 ? 'UPSTREAM_INVALID' : 'BAD_REQUEST',
        `the FHIR server refused the ${type} and its Provenance (${status})`,
      );
    }
    const location = (i: number) => {
      const l = answer?.entry?.[i]?.response?.location;
      const m =
        typeof l === 'string' ? /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?$/.exec(l) : null;
      return m ? { type: m[1], id: m[2], version: m[3] } : undefined;
    };
    const created = location(0);
    if (!created || created.type !== type)
      throw new GatewayError('UPSTREAM_INVALID', 'the FHIR server did not say where it created the resource');
    // Where the server says it: the location's version, the ETag, or the resource it sent back.
    const meta = answer?.entry?.[0]?.resource?.meta;
    const lastModified = answer?.entry?.[0]?.response?.lastModified ?? meta?.lastUpdated;
    const etag = answer?.entry?.[0]?.response?.etag;
    const tagged = typeof etag === 'string' ? /^(?:W\/)?"([A-Za-z0-9\-.]{1,64})"$/.exec(etag)?.[1] : undefined;
    return {
      id: created.id,
      versionId: created.version ?? tagged ?? (typeof meta?.versionId === 'string' ? meta.versionId : undefined),
      lastUpdated: typeof lastModified === 'string' ? lastModified : undefined,
      provenance: location(1)?.id,
    };
  }

  private answer(
    type: Bindable,
    resource: Json,
    created: { id: string; versionId: string | undefined; lastUpdated: string | undefined; provenance: string | undefined },
    named: readonly Named[],
  ): Json {
    const owner = `${type}/${created.id}`;
    const view = (n: Named) => ({ ...n.attachment, _data: undefined, url: contentLink(this.d.publicBase, owner, n.path) });
    const out: Json = {
      ...resource,
      id: created.id,
      meta: { versionId: created.versionId ?? null, lastUpdated: created.lastUpdated ?? null },
      provenance: created.provenance ?? null,
    };
    if (type === 'DocumentReference')
      out['content'] = (resource['content'] as Json[]).map((c, i) => ({ ...c, attachment: view(named[i]) }));
    else out['content'] = view(named[0]);
    out['resource'] = {
      ...resource,
      id: created.id,
      content: out['content'],
    };
    return out;
  }
}

/** The file id an attachment url names: `urn:fhir-binary-gateway:file:{id}`, a bare id, or a signed URL `…/_file/{type}/{id}/{file}?…`. */
export function fileIdOf(url: unknown, publicBase: string): string | undefined {
  if (typeof url !== 'string') return undefined;
  if (url.startsWith(STORAGE_PATH_PREFIX)) {
    const id = url.slice(STORAGE_PATH_PREFIX.length);
    return FILE_ID.test(id) ? id : undefined;
  }
  const root = `${publicBase}/${FILE_SEGMENT}/`;
  if (url.startsWith(root)) {
    const parts = url.slice(root.length).split('?')[0].split('/');
    return parts.length === 3 && FILE_ID.test(parts[2]) ? parts[2] : undefined;
  }
  return undefined;
}
