import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

export const ISSUER = 'https://issuer.test';
export const AUDIENCE = 'fhir-binary-gateway';

export interface TestKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

export async function makeKey(kid: string, alg = 'RS256'): Promise<TestKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

/** How the JWKS server answers instead of its key set: an identity provider having a bad day. */
export type JwksFailure = { readonly status: number; readonly body: string } | 'hang';

/** A real JWKS endpoint over HTTP. Its key list can change under the gateway; it counts fetches. */
export interface JwksServer {
  readonly url: string;
  keys: JWK[];
  fetches: number;
  /** Set: every fetch gets this instead of the keys (counted all the same); undefined: the keys again. */
  failure: JwksFailure | undefined;
  /** Stops listening and drops every connection: fetches are refused until {@link reopen}. */
  close(): Promise<void>;
  /** Listens again on the same port. */
  reopen(): Promise<void>;
}

export async function startJwksServer(t: { teardown(fn: () => unknown): void }, keys: TestKey[]): Promise<JwksServer> {
  const state: { keys: JWK[]; fetches: number; failure: JwksFailure | undefined } = {
    keys: keys.map((k) => k.publicJwk),
    fetches: 0,
    failure: undefined,
  };
  const server = http.createServer((_req, res) => {
    state.fetches++;
    const failure = state.failure;
    if (failure === 'hang') return; // never answers; the client's timeout ends it
    if (failure) {
      res.writeHead(failure.status, { 'content-type': 'application/json' });
      res.end(failure.body);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}/jwks.json`;
  const jwks: JwksServer = {
    url,
    get keys() {
      return state.keys;
    },
    set keys(v) {
      state.keys = v;
    },
    get fetches() {
      return state.fetches;
    },
    set fetches(v) {
      state.fetches = v;
    },
    get failure() {
      return state.failure;
    },
    set failure(v) {
      state.failure = v;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        // Kept-alive sockets would otherwise still be answered after close().
        server.closeAllConnections();
      }),
    reopen: () => new Promise<void>((r) => server.listen(port, '127.0.0.1', r)),
  };
  t.teardown(() => {
    server.closeAllConnections();
    return jwks.close();
  });
  return jwks;
}

export interface TokenOptions {
  readonly claims?: JWTPayload;
  readonly issuer?: string | undefined;
  readonly audience?: string | string[] | undefined;
  /** Seconds from now; undefined leaves exp out. */
  readonly expiresIn?: number | undefined;
  readonly notBefore?: number;
  /** Seconds from now for `iat` (default 0: issued now). */
  readonly issuedAt?: number;
  readonly header?: Record<string, unknown>;
}

export async function mintToken(key: TestKey, opts: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ ...opts.claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, ...opts.header })
    .setIssuedAt(now + (opts.issuedAt ?? 0));
  const iss = 'issuer' in opts ? opts.issuer : ISSUER;
  if (iss !== undefined) jwt.setIssuer(iss);
  const aud = 'audience' in opts ? opts.audience : AUDIENCE;
  if (aud !== undefined) jwt.setAudience(aud);
  const exp = 'expiresIn' in opts ? opts.expiresIn : 300;
  if (exp !== undefined) jwt.setExpirationTime(now + exp);
  if (opts.notBefore !== undefined) jwt.setNotBefore(now + opts.notBefore);
  return jwt.sign(key.privateKey);
}
