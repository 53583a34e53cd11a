import { ERROR_CODE_SYSTEM, type GatewayError } from './catalogue.js';

/** The two formats FHIR errors are written in (lib/accept.ts decides which). */
export type FhirFormat = 'json' | 'xml';

export interface OutcomeIssue {
  readonly severity: 'error' | 'warning' | 'information';
  readonly code: string;
  readonly details: { readonly coding: readonly { system: string; code: string }[]; readonly text: string };
  readonly diagnostics?: string;
}

export function outcomeOf(err: GatewayError, requestId: string | undefined): { resourceType: 'OperationOutcome'; issue: OutcomeIssue[] } {
  return {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: 'error',
        code: err.issue,
        details: { coding: [{ system: ERROR_CODE_SYSTEM, code: err.code }], text: err.message },
        ...(requestId ? { diagnostics: `request id ${requestId}` } : {}),
      },
    ],
  };
}

function xmlEscape(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function renderOutcome(err: GatewayError, requestId: string | undefined, format: FhirFormat): { body: string; contentType: string } {
  const oo = outcomeOf(err, requestId);
  if (format === 'json') return { body: JSON.stringify(oo), contentType: 'application/fhir+json; charset=utf-8' };
  const issue = oo.issue[0];
  const coding = issue.details.coding[0];
  const body =
    '<?xml version="1.0" encoding="UTF-8"?>' +
    '<OperationOutcome xmlns="http://hl7.org/fhir"><issue>' +
    `<severity value="error"/><code value="${xmlEscape(issue.code)}"/>` +
    `<details><coding><system value="${xmlEscape(coding.system)}"/><code value="${xmlEscape(coding.code)}"/></coding>` +
    `<text value="${xmlEscape(issue.details.text)}"/></details>` +
    (issue.diagnostics ? `<diagnostics value="${xmlEscape(issue.diagnostics)}"/>` : '') +
    '</issue></OperationOutcome>';
  return { body, contentType: 'application/fhir+xml; charset=utf-8' };
}
