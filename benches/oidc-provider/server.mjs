// node-oidc-provider configured like mandate for benches/run.sh: one
// confidential client, ES256 JWT access tokens with one audience (resource
// indicators), client credentials, introspection, refresh tokens that rotate
// on every use, in-memory storage.
//
// Environment: PORT (required), BENCH_CLIENT_SECRET, BENCH_RS_SECRET.
//
// Storage is the library's in-memory adapter, in a store large enough to keep
// everything (its default capacity of 1,000 entries loses live tokens).
//
// Two differences are forced by the library and are named in the table:
// - it cannot introspect JWT access tokens, so a second resource,
//   https://opaque.example.com, issues opaque tokens for the introspection row;
// - refresh tokens are minted in-process (POST /bench/refresh-tokens?n=N, an
//   admin route of this bench server only) instead of through a login and
//   consent flow; mandate's are obtained through its real code flow.
import { generateKeyPairSync } from 'node:crypto';
import { createRequire } from 'node:module';

import Provider from 'oidc-provider';
// The library's own in-memory adapter and store, with a larger capacity (below).
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const require = createRequire(import.meta.url);
const { version } = require('oidc-provider/package.json');

const port = Number(process.env.PORT);
if (!port) {
  console.error('server.mjs: PORT is required');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const API = 'https://api.example.com';
const OPAQUE = 'https://opaque.example.com';
const CLIENT_ID = 'bench';
const CLIENT_SECRET = process.env.BENCH_CLIENT_SECRET || 'bench-secret-0123456789abcdef0123456789abcdef';
const RS_ID = 'bench-rs';
const RS_SECRET = process.env.BENCH_RS_SECRET || 'bench-rs-secret-0123456789abcdef0123456789abcd';

// A fresh ES256 signing key per start, as mandate makes one in a fresh keys dir.
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

const resourceServers = {
  [API]: {
    scope: 'invoices:read',
    audience: API,
    accessTokenTTL: 300,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'ES256' } },
  },
  // Introspection only: the library introspects opaque tokens only.
  [OPAQUE]: {
    scope: 'invoices:read',
    audience: OPAQUE,
    accessTokenTTL: 300,
    accessTokenFormat: 'opaque',
  },
};

// The default in-memory adapter keeps at most 1,000 entries (a two-generation
// LRU) and silently drops the rest: under 64 concurrent rotating refreshes it
// loses live refresh tokens ("refresh token not found"). The same adapter and
// LRU with room for every entry of a run is the equivalent of a real store.
const store = new LRU({ maxSize: 50_000_000 });
const adapter = (model) => new MemoryAdapter(model, store, 0);

const configuration = {
  adapter,
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1:9/cb'],
      scope: 'invoices:read',
    },
    {
      // The resource server that introspects (mandate: the client that owns the audience).
      client_id: RS_ID,
      client_secret: RS_SECRET,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks: { keys: [signingKey] },
  // The only key is ES256 (the library's default for ID tokens is RS256).
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  scopes: ['invoices:read'],
  cookies: { keys: ['bench-cookie-key-0123456789abcdef'] },
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  // As mandate: a client allowed the refresh_token grant gets one with its code.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: 300,
    ClientCredentials: 300,
    RefreshToken: 86400,
    Grant: 86400,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      allowedPolicy: async (_ctx, client) => client.clientAuthMethod !== 'none',
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf || API,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource) => {
        const info = resourceServers[resource];
        if (!info) throw new Provider.errors.InvalidTarget();
        return info;
      },
    },
  },
};

const provider = new Provider(issuer, configuration);

// Admin route of this bench server only: mints N refresh tokens, each of its
// own grant (as mandate's code flow makes one grant per authorization).
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/bench/refresh-tokens') {
    const n = Math.min(Math.max(Number(ctx.query.n) || 1, 1), 1024);
    const client = await provider.Client.find(CLIENT_ID);
    const now = Math.floor(Date.now() / 1000);
    const tokens = [];
    for (let i = 0; i < n; i += 1) {
      const grant = new provider.Grant({ accountId: 'bench', clientId: CLIENT_ID });
      grant.addResourceScope(API, 'invoices:read');
      const grantId = await grant.save();
      const rt = new provider.RefreshToken({
        client,
        accountId: 'bench',
        grantId,
        gty: 'authorization_code',
        authTime: now,
        scope: 'invoices:read',
        resource: API,
      });
      tokens.push(await rt.save());
    }
    ctx.type = 'application/json';
    ctx.body = JSON.stringify({ refresh_tokens: tokens });
    return;
  }
  if (ctx.method === 'GET' && ctx.path === '/bench/version') {
    ctx.type = 'application/json';
    ctx.body = JSON.stringify({ node: process.version, 'oidc-provider': version });
    return;
  }
  await next();
});

if (process.env.BENCH_DEBUG) {
  provider.on('grant.error', (ctx, err) => console.error('grant.error', err.error, err.error_detail, ctx.oidc.params?.refresh_token));
  provider.on('refresh_token.saved', (t) => console.error('saved', t.jti));
  provider.on('refresh_token.consumed', (t) => console.error('consumed', t.jti));
}

const server = provider.listen(port, '127.0.0.1');
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
