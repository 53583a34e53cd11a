import type { GatewayConfig, InflateConfig, RuleLimits, RuleRequire } from '../config/types.js';
import type { Interaction } from '../fhir/interaction.js';
import { parseRanges, type Range } from '../lib/ip.js';

/** A rule with everything inherited from defaultRule filled in and its IP ranges parsed. */
export interface EffectiveRule {
  readonly name: string;
  readonly require: RuleRequire;
  readonly limits: RuleLimits;
  readonly forwardAuthorization: boolean;
  /** The top-level `inflate` with the rule's own settings over it. */
  readonly inflate: InflateConfig;
  readonly ipAllow: readonly Range[];
  readonly ipDeny: readonly Range[];
}

interface Matcher {
  readonly interactions: ReadonlySet<string> | undefined;
  readonly resourceTypes: ReadonlySet<string> | undefined;
  /** The rule names resourceTypes (possibly only '*'): it matches only interactions that have one. */
  readonly typed: boolean;
  readonly operations: ReadonlySet<string> | undefined;
  readonly rule: EffectiveRule;
}

/**
 * The policy engine: the first rule whose match fits the interaction wins; when none fits, the
 * defaultRule applies (fail closed: its defaults require HTTPS and a token). A rule that names
 * resourceTypes never matches a system-level interaction, and one that names operations never
 * matches a non-operation, so a narrow rule cannot loosen something it did not name.
 */
export class Policy {
  private readonly matchers: readonly Matcher[];
  readonly defaultRule: EffectiveRule;
  private readonly types: Readonly<Record<string, readonly string[]>>;
  private readonly otherTypes: readonly string[];

  constructor(config: GatewayConfig) {
    const d = config.defaultRule;
    this.defaultRule = effective('defaultRule', d.require, d.limits, d.forwardAuthorization, config.inflate);
    this.matchers = config.rules.map((r) => ({
      interactions: r.match.interactions ? new Set(r.match.interactions) : undefined,
      resourceTypes: r.match.resourceTypes && !r.match.resourceTypes.includes('*') ? new Set(r.match.resourceTypes) : undefined,
      typed: r.match.resourceTypes !== undefined,
      operations: r.match.operations ? new Set(r.match.operations) : undefined,
      rule: effective(
        r.name,
        { ...d.require, ...r.require },
        { ...d.limits, ...r.limits },
        r.forwardAuthorization ?? d.forwardAuthorization,
        { ...config.inflate, ...r.inflate },
      ),
    }));
    this.types = config.content.allowedTypes;
    // A resource type the policy does not list carries what Binary may: its content is stored and served the same way.
    this.otherTypes = Object.hasOwn(this.types, 'Binary') ? this.types['Binary'] : [];
  }

  ruleFor(i: Interaction): EffectiveRule {
    for (const m of this.matchers) {
      if (m.interactions && !m.interactions.has(i.kind)) continue;
      if (m.typed && i.resourceType === undefined) continue;
      if (m.resourceTypes && (i.resourceType === undefined || !m.resourceTypes.has(i.resourceType))) continue;
      if (m.operations && (i.operation === undefined || !m.operations.has(i.operation))) continue;
      return m.rule;
    }
    return this.defaultRule;
  }

  /** The media types attachments of `resourceType` may have (`content.allowedTypes`). */
  allowedTypes(resourceType: string): readonly string[] {
    return Object.hasOwn(this.types, resourceType) ? this.types[resourceType] : this.otherTypes;
  }
}

function effective(
  name: string,
  require: RuleRequire,
  limits: RuleLimits,
  forwardAuthorization: boolean,
  inflate: InflateConfig,
): EffectiveRule {
  return Object.freeze({
    name,
    require,
    limits,
    forwardAuthorization,
    inflate,
    ipAllow: parseRanges(require.ipAllow),
    ipDeny: parseRanges(require.ipDeny),
  });
}
