import type { GatewayConfig, InflateConfig, RuleLimits, RuleRequire } from '../config/types.js';
import type { Interaction, InteractionKind } from '../fhir/interaction.js';
import { BUILTIN_OPERATIONS, reachOf, type OperationReturns, type Reach } from '../fhir/reach.js';
import { RESOURCE_TYPE_NAMES } from '../fhir/resource-types.js';
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

/** One type a request reaches (`*`: every type) and a rule that governs reading it. */
export interface ReachedRule {
  readonly type: string;
  readonly rule: EffectiveRule;
}

/** The ways a resource of a type is read: any rule matching one of them governs the type's content in an answer. */
const READ_KINDS: readonly InteractionKind[] = ['read', 'vread', 'search', 'history'];

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
  /** What each operation may return: the built-ins with the policy's `operations` over them. */
  readonly operations: ReadonlyMap<string, OperationReturns>;
  /** The rules of every type, for a request whose reach is unbounded (computed once). */
  private readonly everyType: readonly ReachedRule[];

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
    const ops = new Map(BUILTIN_OPERATIONS);
    for (const [name, returns] of Object.entries(config.operations)) ops.set(name, typeof returns === 'string' ? returns : returns.types);
    this.operations = ops;
    this.everyType = this.rulesOfEveryType(config);
  }

  /** The types `i` reaches besides its own (fhir/reach.ts), with this policy's operation declarations. */
  reachOf(i: Interaction): Reach {
    return reachOf(i, this.operations);
  }

  /**
   * The rules that govern reading each type `reach` names, first match per way of reading (read,
   * vread, search, history), so a rule that tightens any of them holds. An unbounded reach gets
   * the rules of every type, under type `*`.
   */
  reachedRules(reach: Reach): readonly ReachedRule[] {
    if (reach.any) return this.everyType;
    const out: ReachedRule[] = [];
    for (const type of reach.types) {
      for (const rule of this.readRules(type)) out.push({ type, rule });
    }
    return out;
  }

  /**
   * The rule an exchange that reaches other types runs under: `main`, with the smallest limits and
   * inflate budget of every rule it reached (the answer carries their types' content too).
   */
  strictest(main: EffectiveRule, reached: readonly ReachedRule[]): EffectiveRule {
    let rule = main;
    for (const { rule: r } of reached) {
      if (r === main) continue;
      const maxRequestBytes = Math.min(rule.limits.maxRequestBytes, r.limits.maxRequestBytes);
      const enabled = rule.inflate.enabled && r.inflate.enabled;
      const maxBytesPerResponse = Math.min(rule.inflate.maxBytesPerResponse, r.inflate.maxBytesPerResponse);
      rule = Object.freeze({
        ...rule,
        limits: { ...rule.limits, maxRequestBytes },
        inflate: { ...rule.inflate, enabled, maxBytesPerResponse },
      });
    }
    return rule;
  }

  /** Whether `rule` names `type` among its resourceTypes (not by `*`): the operator wrote it for that type. */
  namesType(rule: EffectiveRule, type: string): boolean {
    return this.matchers.find((m) => m.rule === rule)?.resourceTypes?.has(type) === true;
  }

  /** The rules that govern reading `type` (read, vread, search, history), once per type: asked on every request. */
  readRulesOf(type: string): readonly EffectiveRule[] {
    let rules = this.readRulesByType.get(type);
    if (!rules) {
      rules = this.readRules(type);
      // Types come from requests: bounded (a classified type is one of R4's 146 anyway).
      if (this.readRulesByType.size < 512) this.readRulesByType.set(type, rules);
    }
    return rules;
  }

  private readonly readRulesByType = new Map<string, readonly EffectiveRule[]>();

  private readRules(type: string): EffectiveRule[] {
    const rules: EffectiveRule[] = [];
    for (const kind of READ_KINDS) {
      const rule = this.ruleFor({ kind, resourceType: type, method: 'GET', path: type, query: '' });
      if (!rules.includes(rule)) rules.push(rule);
    }
    return rules;
  }

  /** Every type a rule names, plus one it does not (which gets what every unnamed type gets). */
  private rulesOfEveryType(config: GatewayConfig): ReachedRule[] {
    const named = new Set<string>();
    for (const r of config.rules) for (const t of r.match.resourceTypes ?? []) if (t !== '*') named.add(t);
    const unnamed = RESOURCE_TYPE_NAMES.find((t) => !named.has(t));
    const rules: EffectiveRule[] = [];
    for (const type of unnamed === undefined ? named : [...named, unnamed]) {
      for (const rule of this.readRules(type)) if (!rules.includes(rule)) rules.push(rule);
    }
    return rules.map((rule) => ({ type: '*', rule }));
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
