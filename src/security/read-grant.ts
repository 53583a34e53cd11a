import { READS_ALL, type ReadCheck } from '../rewrite/params.js';
import type { Principal } from './checks.js';
import type { EffectiveRule } from './policy.js';
import { covers, isUnrestrictedUserOrSystem, type ScopeSet } from './scopes.js';

/**
 * Which resource types the caller may read, for what an answer carries: stored content is inflated
 * only into resources the caller may read, and a write's answer carries the resource only if the
 * caller may read it (rewrite/params.ts). A search grant (`s`) finds resources; reading their
 * content needs `r`, as a direct read would.
 *
 * One object per token's scope set, with its answers remembered: the same token asks about the
 * same few types request after request, and a plain read allocates nothing for it.
 */
export function readGrant(principal: Principal, rule: EffectiveRule): ReadCheck {
  // Where the rule applies no scope model, the caller passed every check there is.
  if (!rule.require.smart || principal.scopes === undefined) return READS_ALL;
  return grantOf(principal.scopes);
}

/**
 * For a batch or transaction answer: its entries were each held to their own rules, so the
 * token's SMART scopes, when it has any, say what the answer may carry whatever the Bundle's rule.
 */
export function bundleReadGrant(principal: Principal): ReadCheck {
  if (principal.scopes === undefined || principal.scopes.smart.length === 0) return READS_ALL;
  return grantOf(principal.scopes);
}

function grantOf(scopes: ScopeSet): ReadCheck {
  let grant = grants.get(scopes);
  if (!grant) {
    grant = new ScopeReadGrant(scopes);
    grants.set(scopes, grant);
  }
  return grant;
}

const grants = new WeakMap<ScopeSet, ScopeReadGrant>();

class ScopeReadGrant implements ReadCheck {
  private readonly byType = new Map<string, boolean>();

  constructor(private readonly set: ScopeSet) {}

  mayRead(type: string | undefined): boolean {
    if (type === undefined) return false;
    let may = this.byType.get(type);
    if (may === undefined) {
      may = this.decide(type);
      // Types come from answers: bound the memo.
      if (this.byType.size >= 256) this.byType.clear();
      this.byType.set(type, may);
    }
    return may;
  }

  private decide(type: string): boolean {
    // A Binary's content is governed by its securityContext, which only the binary plane checks:
    // elsewhere only a grant that passes every such check reads it.
    if (type === 'Binary') return this.set.smart.some((s) => isUnrestrictedUserOrSystem(s) && covers(s, 'Binary', 'r'));
    // A patient/ or restricted read grant counts: the request it came with was already held to it.
    return this.set.smart.some((s) => covers(s, type, 'r'));
  }
}
