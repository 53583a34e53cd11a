/**
 * Element names whose type (SampledData, Signature) has a string `data` that is not attachment
 * content; from the R4 definitions. Every other object with a string `data` below a resource is
 * an Attachment (R4 has no third kind), so a new or unknown element is externalized, not missed.
 */
export const NOT_ATTACHMENT = new Set([
  'valueSampledData',
  'defaultValueSampledData',
  'fixedSampledData',
  'patternSampledData',
  'valueSignature',
  'defaultValueSignature',
  'fixedSignature',
  'patternSignature',
  'signature',
  'proxySignature',
  'sourceSignature',
  'attestationSignature',
]);
