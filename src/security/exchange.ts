import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Interaction } from '../fhir/interaction.js';
import type { RewriteParams } from '../rewrite/params.js';
import type { RequestContext } from './client.js';
import type { CheckInput, Principal } from './checks.js';
import type { EffectiveRule } from './policy.js';
import type { Settings } from './settings.js';

/**
 * One request on its way through the gateway, once it is classified and authorized: what every
 * handler, the forwarder and the rewrite engine are given, instead of the pieces one by one.
 * Nothing in it changes after it is made.
 */
export class Exchange {
  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly ctx: RequestContext,
    /** What was asked, the gateway's own parameters (`_inflate`) taken out. */
    readonly interaction: Interaction,
    /** The policy rule that matched it. */
    readonly rule: EffectiveRule,
    /** Who is asking, as the checks verified it. */
    readonly principal: Principal,
    /** How answers to it are rewritten: the rule's inflate settings and the client's `_inflate`. */
    readonly rewrite: RewriteParams,
    /** The configuration in force when it arrived. */
    readonly settings: Settings,
  ) {}

  /** The same exchange under another rule (a request that does one thing under another interaction's rule). */
  withRule(rule: EffectiveRule): Exchange {
    return new Exchange(this.req, this.res, this.ctx, this.interaction, rule, this.principal, this.rewrite, this.settings);
  }

  /** The exchange as the checks see a request: for checks run on its behalf later (a body's conditional references). */
  checkInput(): CheckInput {
    return {
      ctx: this.ctx,
      interaction: this.interaction,
      rule: this.rule,
      authorization: this.req.headers.authorization,
      contentLength: undefined,
      principal: this.principal,
    };
  }

  /**
   * Lets the client send its body (Expect: 100-continue). Called by a handler only once nothing
   * left can refuse the request before reading it: a refused upload is answered before its body
   * is sent.
   */
  continue100(): void {
    if (this.req.headers.expect?.toLowerCase() === '100-continue') this.res.writeContinue();
  }

  /**
   * The SMART scopes that count for this exchange: the token's, where its rule asks for SMART;
   * elsewhere undefined (the rule has no scope model to apply).
   */
  get smartScopes(): Principal['scopes'] {
    return this.rule.require.smart ? this.principal.scopes : undefined;
  }
}
