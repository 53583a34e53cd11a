/**
 * The upstream's base URLs (its configured URL and the aliases it calls itself by, e.g. HAPI's
 * server_address) and the public base clients use. Absolute URLs the upstream writes (Location,
 * fullUrl, Bundle.link) are moved from one to the other, so clients never learn the upstream's.
 */
export class BaseUrls {
  /** upstream.url without a trailing '/'. */
  readonly upstream: string;
  /** The upstream's URL and its aliases, without trailing '/'. */
  readonly upstreams: readonly string[];
  /** The public FHIR base, without a trailing '/'. */
  readonly public: string;
  /** The public base's host: what the upstream is told in X-Forwarded-Host. */
  readonly publicHost: string | undefined;

  constructor(upstream: string, aliases: readonly string[], publicBase: string) {
    this.upstream = upstream.replace(/\/+$/, '');
    this.upstreams = [this.upstream, ...aliases.map((a) => a.replace(/\/+$/, ''))];
    this.public = publicBase.replace(/\/+$/, '');
    this.publicHost = URL.canParse(publicBase) ? new URL(publicBase).host : undefined;
  }

  /** An absolute URL under one of the upstream's bases, moved to the same path under the public base; anything else as it is. */
  toPublic(value: string): string {
    for (const base of this.upstreams) {
      if (value.startsWith(base)) {
        const rest = value.slice(base.length);
        if (rest === '' || rest[0] === '/' || rest[0] === '?') return this.public + rest;
      }
    }
    return value;
  }
}
