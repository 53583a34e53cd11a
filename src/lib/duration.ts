/** A window as policies and clients write it: `30s`, `15m`, `1h`, `7d`. */
export const DURATION_PATTERN = '^[1-9][0-9]{0,6}(s|m|h|d)$';

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = new RegExp(DURATION_PATTERN);

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  return Number(text.slice(0, -1)) * UNIT_MS[text.slice(-1) as keyof typeof UNIT_MS];
}
