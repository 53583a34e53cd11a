import { ERROR_CODE_SYSTEM, type GatewayError } from '../errors.js';

export type FhirFormat = 'json' | 'xml';

const XML_TYPES = ['application/fhir+xml', 'application/xml', 'text/xml', 'xml'];

/**
 * Which format an error should be written in. `_format` overrides Accept (FHIR R4 http.html
 * §2.21.0.6); only an explicit XML request gets XML, anything else gets JSON.
 */
export function errorFormat(accept: string | undefined, query: string): FhirFormat {
  const fmt = formatParam(query);
  if (fmt !== undefined) return XML_TYPES.includes(fmt.toLowerCase()) ? 'xml' : 'json';
  if (!accept) return 'json';
  const a = accept.toLowerCase();
  if (a.includes('json')) return 'json';
  return XML_TYPES.some((t) => a.includes(t)) ? 'xml' : 'json';
}

function formatParam(query: string): string | undefined {
  if (!query.includes('_format=')) return undefined;
  for (const part of query.split('&')) {
    if (part.startsWith('_format=')) {
      try {
        return decodeURIComponent(part.slice(8).replace(/\+/g, ' ')).split(';')[0].trim();
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

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
