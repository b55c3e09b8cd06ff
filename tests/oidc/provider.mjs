// A real OpenID provider (the npm package `oidc-provider`, pinned in package.json) for
// tower-bearer's integration tests. Loopback only, in-memory, never for production.
//
// Install once:   npm ci --prefix tests/oidc
// Run by hand:    node tests/oidc/provider.mjs '{"port": 0}' --no-stdin-watch
//
// Configuration: one JSON object, taken from the first argument that starts with `{`, else from
// the environment variable OIDC_PROVIDER_CONFIG, else `{}`. Every field is optional:
//
//   {
//     "port": 0,                          // 0 = any free port (also env PORT); the chosen one is printed
//     "host": "127.0.0.1",
//     "issuer": "http://127.0.0.1:<port>", // default derived from the bound port
//     "alg": "RS256",                      // default signing alg of JWT access tokens: RS256 | ES256
//     "accessTokenTtl": 300,               // default access-token lifetime, seconds
//     "clients": [{ "client_id": "...", "client_secret": "...", "grant_types": [...],
//                   "redirect_uris": [...], "scope": "openid offline_access read write", ... }],
//     "resources": {                       // resource indicators (RFC 8707) this provider knows
//       "https://api.test/": { "format": "jwt" | "opaque", "alg": "ES256", "ttl": 3,
//                              "scope": "read write", "audience": "https://api.test/" }
//     },
//     "jwks": { "keys": [ <private JWKs> ] } // signing keys; default: a fresh RSA 2048 and P-256 key
//   }                                        // at every start, so a restart means new `kid`s
//
// Defaults when no clients/resources are given: client `tower-bearer-test` / secret
// `tower-bearer-test-secret` (client_credentials, authorization_code, refresh_token; redirect URI
// http://127.0.0.1/callback) and resources `urn:tower-bearer:rs256` (JWT, RS256),
// `urn:tower-bearer:es256` (JWT, ES256) and `urn:tower-bearer:opaque` (opaque), each with scope
// `read write`. A client_credentials token requested without `resource` is opaque too.
//
// Once listening it prints ONE JSON line on stdout and nothing else there:
//   {"ready":true,"issuer":"http://127.0.0.1:PORT","port":PORT,"jwks_uri":"...","kids":{"RS256":"...","ES256":"..."}}
// Log output goes to stderr. It exits on SIGTERM/SIGINT, and when its stdin closes (so a test
// that dies never leaves it running) unless started with --no-stdin-watch.
//
// Features on: clientCredentials, introspection (RFC 7662, opaque tokens; JWTs are refused by
// the provider), revocation, resourceIndicators (JWT access tokens, `typ: at+jwt`), devInteractions,
// offline_access with refresh-token rotation (`rotateRefreshToken: true`: replaying a rotated
// refresh token answers invalid_grant and revokes the grant).
//
// Scripting the authorization-code flow with plain HTTP (devInteractions; keep the cookies each
// response sets and send them back, and do not follow redirects automatically):
//   1. GET  {issuer}/auth?client_id=C&response_type=code&redirect_uri=R&state=S
//           &scope=openid%20offline_access%20read&prompt=consent&resource=urn:tower-bearer:rs256
//      → 303 Location: {issuer}/interaction/{uid}; Set-Cookie: _interaction…, _interaction_resume…
//   2. POST {issuer}/interaction/{uid}   (application/x-www-form-urlencoded)
//           prompt=login&login=alice&password=x        → 303 Location: {issuer}/auth/{uid}
//   3. GET  {issuer}/auth/{uid}                        → 303 Location: {issuer}/interaction/{uid2}
//   4. POST {issuer}/interaction/{uid2}   prompt=consent → 303 Location: {issuer}/auth/{uid2}
//   5. GET  {issuer}/auth/{uid2}                       → 303 Location: R?code=…&state=S&iss=…
//   6. POST {issuer}/token  (HTTP Basic client auth) grant_type=authorization_code&code=…&redirect_uri=R
//      → {access_token (JWT for the granted resource), refresh_token, id_token, expires_in, scope, …}
//   7. POST {issuer}/token  grant_type=refresh_token&refresh_token=…  → a new access and refresh
//      token; replaying the old refresh token then answers 400 {"error":"invalid_grant"}.
// `prompt=consent` plus `offline_access` is what makes the provider issue a refresh token.
// tests/support/oidc.rs (`OidcProvider::authorization_code`) runs exactly these steps.
// Any password is accepted; the login name becomes the `sub`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import process from 'node:process';

// stdout carries exactly one line (the ready line); oidc-provider's notices go to stderr.
for (const level of ['log', 'info', 'debug']) {
  // eslint-disable-next-line no-console
  console[level] = (...a) => process.stderr.write(`${a.join(' ')}\n`);
}

// Any failure before the ready line exits non-zero with a message on stderr, so the harness
// sees EOF on stdout at once instead of waiting for a ready line that never comes.
function fail(code, msg) {
  process.stderr.write(`provider.mjs: ${msg}\n`);
  process.exit(code);
}
process.on('uncaughtException', (err) => fail(1, `uncaught exception: ${err?.stack ?? err}`));
process.on('unhandledRejection', (err) => fail(1, `unhandled rejection: ${err?.stack ?? err}`));

let Provider;
try {
  ({ default: Provider } = await import('oidc-provider'));
} catch (err) {
  process.stderr.write(
    `provider.mjs: cannot load oidc-provider (${err.code ?? err.message}); `
    + 'install the pinned packages with: npm ci --prefix tests/oidc\n',
  );
  process.exit(3);
}

const args = process.argv.slice(2);
const rawConfig = args.find((a) => a.trimStart().startsWith('{')) ?? process.env.OIDC_PROVIDER_CONFIG ?? '{}';
const config = JSON.parse(rawConfig);
const watchStdin = !args.includes('--no-stdin-watch');

const host = config.host ?? '127.0.0.1';
const port = Number(config.port ?? process.env.PORT ?? 0);
const defaultAlg = config.alg ?? 'RS256';
const defaultTtl = Number(config.accessTokenTtl ?? 300);

// Keys come out of generateKeyPairSync already as JWKs. Do NOT write
// `generateKeyPairSync(...).privateKey.export({ format: 'jwk' })`: in node 20 that can deadlock
// the main thread for good (no CPU, futex wait, the ready line never comes). The export holds
// the key's mutex while it allocates the JWK strings; when that allocation triggers a GC, the
// GC finalises the (already unreachable) key-generation job, whose destructor locks the same
// non-recursive mutex. Seen here in about 1 start in 50 after loading oidc-provider, and within
// a few thousand iterations of a bare `generateKeyPairSync('ec').privateKey.export({format:'jwk'})`
// loop. Encoding inside the job avoids it: the job is still referenced while it encodes.
function freshKeys() {
  const jwk = { format: 'jwk' };
  const gen = (type, opts) => generateKeyPairSync(type, {
    ...opts, publicKeyEncoding: jwk, privateKeyEncoding: jwk,
  }).privateKey;
  const rsa = gen('rsa', { modulusLength: 2048 });
  const ec = gen('ec', { namedCurve: 'P-256' });
  const kid = (p) => `${p}-${randomBytes(6).toString('hex')}`;
  return {
    keys: [
      { ...rsa, kid: kid('rsa'), alg: 'RS256', use: 'sig' },
      { ...ec, kid: kid('ec'), alg: 'ES256', use: 'sig' },
    ],
  };
}
const jwks = config.jwks ?? freshKeys();

const clients = config.clients ?? [{
  client_id: 'tower-bearer-test',
  client_secret: 'tower-bearer-test-secret',
  grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: ['http://127.0.0.1/callback'],
  scope: 'openid offline_access read write',
}];
for (const c of clients) {
  c.grant_types ??= ['client_credentials', 'authorization_code', 'refresh_token'];
  c.response_types ??= c.grant_types.includes('authorization_code') ? ['code'] : [];
  c.redirect_uris ??= c.grant_types.includes('authorization_code') ? ['http://127.0.0.1/callback'] : [];
  c.token_endpoint_auth_method ??= 'client_secret_basic';
}

const resources = config.resources ?? {
  'urn:tower-bearer:rs256': { format: 'jwt', alg: 'RS256', scope: 'read write' },
  'urn:tower-bearer:es256': { format: 'jwt', alg: 'ES256', scope: 'read write' },
  'urn:tower-bearer:opaque': { format: 'opaque', scope: 'read write' },
};
const scopes = new Set(['openid', 'offline_access']);
for (const r of Object.values(resources)) {
  for (const s of (r.scope ?? 'read write').split(' ')) scopes.add(s);
}

const server = createServer();
server.keepAliveTimeout = 1000;
try {
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
} catch (err) {
  // e.g. EADDRINUSE on a restart when another process took the port meanwhile.
  fail(4, `cannot listen on ${host}:${port}: ${err.code ?? ''} ${err.message}`);
}
const boundPort = server.address().port;
const issuer = config.issuer ?? `http://${host}:${boundPort}`;

const provider = new Provider(issuer, {
  clients,
  jwks,
  scopes: [...scopes],
  claims: { openid: ['sub'] },
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: () => true },
    revocation: {
      enabled: true,
      allowedPolicy: (_ctx, client, token) => token.clientId === client.clientId,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        const r = resources[indicator];
        if (!r) throw new Provider.errors.InvalidTarget();
        const format = r.format ?? 'jwt';
        return {
          scope: r.scope ?? 'read write',
          audience: r.audience ?? indicator,
          accessTokenTTL: Number(r.ttl ?? defaultTtl),
          accessTokenFormat: format,
          ...(format === 'jwt' ? { jwt: { sign: { alg: r.alg ?? defaultAlg } } } : {}),
        };
      },
    },
  },
  rotateRefreshToken: true,
  issueRefreshToken: (_ctx, client, code) => client.grantTypeAllowed('refresh_token')
    && code.scopes.has('offline_access'),
  ttl: {
    // A resource's own `ttl` wins (oidc-provider ignores accessTokenTTL when these are numbers).
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? defaultTtl,
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? defaultTtl,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 14 * 24 * 3600,
    RefreshToken: 14 * 24 * 3600,
  },
  pkce: { required: () => false },
  // Loopback tests: no cookie signing keys to manage, but keep them explicit so no warning.
  cookies: { keys: [randomBytes(32).toString('hex')] },
  renderError: (ctx, out) => {
    ctx.type = 'application/json';
    ctx.body = out;
  },
});
// Tests talk plain HTTP on loopback; the provider must not insist on TLS.
provider.proxy = true;
provider.on('server_error', (_ctx, err) => process.stderr.write(`provider server_error: ${err?.stack ?? err}\n`));

server.on('request', provider.callback());

const kids = {};
for (const k of jwks.keys) {
  if (k.alg && k.kid) kids[k.alg] = k.kid;
}
process.stdout.write(`${JSON.stringify({
  ready: true, issuer, port: boundPort, jwks_uri: `${issuer}/jwks`, kids,
})}\n`);

let stopping = false;
function shutdown(code = 0) {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(code));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(code), 500).unref();
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
if (watchStdin) {
  process.stdin.on('end', () => shutdown(0));
  process.stdin.on('error', () => shutdown(0));
  process.stdin.on('data', () => {});
  process.stdin.resume();
}
