// Third-party-client conformance: openid-client v6 (panva; on oauth4webapi)
// against a live mandate, authorization code flow with PKCE S256 and RFC 8707
// `resource`, for a public ai-agent client (None() client auth, discovery at
// /.well-known/oauth-authorization-server) and a confidential one
// (ClientSecretBasic, discovery at /.well-known/openid-configuration).
// mandate is an OAuth 2.0 authorization server, not an OpenID provider: no
// id_token is asked for or expected. openid-client checks `iss` in the
// authorization response (RFC 9207) itself; `allowInsecureRequests` lets it
// talk to the http:// loopback issuer.
//
//   node openid_client.mjs [--pg]        (through conformance/run.sh)

import * as oidc from 'openid-client';
import {
  BASE_CONFIG, FILES, INVOICES, CheckFailed, MandateServer, Suite, UserAgent, checkUserTokenClaims,
  expect, expectEq, freePort, need, parseArgs, postForm, short, verifyAccessToken,
} from './harness.mjs';

const USERNAME = 'alice';
const PASSWORD = 'correct horse battery staple';
const SCOPE = 'invoices:read';

const suite = new Suite('openid-client');

// Each flow: discovery, authorization URL, login/consent, code grant, refresh.
const FLOWS = {
  public: { name: 'Invoice Helper (openid-client, public)', algorithm: 'oauth2' },
  confidential: { name: 'Invoice Helper (openid-client, confidential)', algorithm: 'oidc' },
};

suite.check('server starts; CLI creates user alice, a public and a confidential ai-agent client', async (ctx) => {
  const server = ctx.server;
  await server.start();
  ctx.issuer = server.issuer;
  expectEq(server.createUser(USERNAME, PASSWORD).username, USERNAME, 'user create --json username');
  ctx.redirectUri = `http://127.0.0.1:${await freePort()}/callback`; // caught, never followed
  const common = ['--redirect-uri', ctx.redirectUri, '--resource', INVOICES, '--resource', FILES,
    '--scope', SCOPE, '--scope', 'files:read'];
  const pub = server.createClient('--name', FLOWS.public.name, '--public', ...common);
  expect(!pub.client_secret, 'a public client got a secret');
  const conf = server.createClient('--name', FLOWS.confidential.name,
    '--grant', 'authorization_code', '--grant', 'refresh_token', ...common);
  expect(typeof conf.client_secret === 'string' && conf.client_secret.length >= 32,
    `confidential client secret ${conf.client_secret}`);
  ctx.clients = { public: pub, confidential: conf };
  ctx.ua = new UserAgent(server.issuer);
});

for (const [kind, flow] of Object.entries(FLOWS)) {
  const wellKnown = flow.algorithm === 'oauth2' ? 'oauth-authorization-server' : 'openid-configuration';

  suite.check(`${kind}: discovery(issuer) via /.well-known/${wellKnown}`, async (ctx) => {
    need(ctx, 'clients');
    const client = ctx.clients[kind];
    const auth = kind === 'public' ? oidc.None() : oidc.ClientSecretBasic(client.client_secret);
    const config = await oidc.discovery(new URL(ctx.issuer), client.client_id, undefined, auth, {
      algorithm: flow.algorithm,
      execute: [oidc.allowInsecureRequests],
      timeout: 10,
    });
    const md = config.serverMetadata();
    expectEq(md.issuer, ctx.issuer, 'issuer');
    expectEq(md.authorization_response_iss_parameter_supported, true, 'authorization_response_iss_parameter_supported');
    expect(md.supportsPKCE('S256'), `PKCE S256 not advertised: ${JSON.stringify(md.code_challenge_methods_supported)}`);
    expect(!md.supportsPKCE('plain'), 'plain PKCE is advertised');
    ctx[`${kind}:config`] = config;
  });

  suite.check(`${kind}: buildAuthorizationUrl (PKCE S256, resource); login + consent; iss-checked code grant`, async (ctx) => {
    need(ctx, `${kind}:config`);
    const config = ctx[`${kind}:config`];
    const verifier = oidc.randomPKCECodeVerifier();
    const challenge = await oidc.calculatePKCECodeChallenge(verifier);
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: ctx.redirectUri,
      scope: SCOPE,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state,
      resource: INVOICES,
    });
    const res = await ctx.ua.authorize(url.href, { username: USERNAME, password: PASSWORD, expectConsent: true });
    const page = res.consentPage;
    for (const text of [flow.name, 'AI agent', 'Invoices API', 'Read your invoices']) {
      expect(page.text.includes(text), `consent page does not show "${text}": ${short(page.text)}`);
    }
    expectEq(res.redirect.split('?')[0], ctx.redirectUri, 'redirect target');
    expectEq(res.params.iss, ctx.issuer, 'iss in the authorization response');
    const since = Math.floor(Date.now() / 1000);
    // openid-client validates state and iss (RFC 9207) from the callback URL,
    // then posts code, redirect_uri, code_verifier and client authentication.
    const tokens = await oidc.authorizationCodeGrant(config, new URL(res.redirect),
      { pkceCodeVerifier: verifier, expectedState: state }, { resource: INVOICES });
    expectEq(tokens.token_type?.toLowerCase(), 'bearer', 'token_type');
    expect(Number.isInteger(tokens.expires_in) && tokens.expires_in > 0 && tokens.expires_in <= 3600,
      `expires_in ${tokens.expires_in}`);
    expectEq(tokens.scope, SCOPE, 'scope');
    expect(typeof tokens.refresh_token === 'string' && tokens.refresh_token, 'no refresh_token');
    expect(!tokens.id_token, 'an id_token from an OAuth 2.0 server');
    const claims = await verifyAccessToken(tokens.access_token, config.serverMetadata().jwks_uri, ctx.issuer, INVOICES);
    checkUserTokenClaims(claims, { username: USERNAME, clientId: config.clientMetadata().client_id, scope: SCOPE, since });
    ctx[`${kind}:tokens`] = tokens;
    ctx[`${kind}:claims`] = claims;
  });

  suite.check(`${kind}: refreshTokenGrant rotates; the old refresh token is then invalid_grant`, async (ctx) => {
    need(ctx, `${kind}:tokens`);
    const config = ctx[`${kind}:config`];
    const old = ctx[`${kind}:tokens`];
    const fresh = await oidc.refreshTokenGrant(config, old.refresh_token, { resource: INVOICES });
    expect(fresh.refresh_token && fresh.refresh_token !== old.refresh_token, 'the refresh token did not rotate');
    expect(fresh.access_token && fresh.access_token !== old.access_token, 'no new access token');
    const claims = await verifyAccessToken(fresh.access_token, config.serverMetadata().jwks_uri, ctx.issuer, INVOICES);
    checkUserTokenClaims(claims, { username: USERNAME, clientId: config.clientMetadata().client_id, scope: SCOPE });
    expect(claims.jti !== ctx[`${kind}:claims`].jti, 'the refreshed token has the old jti');
    try {
      await oidc.refreshTokenGrant(config, old.refresh_token, { resource: INVOICES });
    } catch (e) {
      expectEq(e.error ?? e.cause?.error ?? e.code, 'invalid_grant', `error of the reused refresh (${e.message})`);
      return;
    }
    throw new CheckFailed('openid-client refreshed with a used refresh token');
  });
}

suite.check('confidential: the token endpoint refuses a wrong client secret (401 invalid_client)', async (ctx) => {
  need(ctx, 'confidential:config');
  const client = ctx.clients.confidential;
  const r = await postForm(ctx['confidential:config'].serverMetadata().token_endpoint,
    { grant_type: 'refresh_token', refresh_token: 'x'.repeat(43), resource: INVOICES },
    { authorization: `Basic ${Buffer.from(`${client.client_id}:wrong`).toString('base64')}` });
  expectEq(r.status, 401, `status (${short(r.text)})`);
  expectEq(r.json?.error, 'invalid_client', 'error');
  expect(r.headers.get('www-authenticate'), '401 without WWW-Authenticate');
});

suite.check('multi-resource grant: one consent for two resources; each token names one audience', async (ctx) => {
  need(ctx, 'public:config');
  const config = ctx['public:config'];
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: ctx.redirectUri,
    scope: `${SCOPE} files:read`,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
  });
  url.searchParams.append('resource', INVOICES);
  url.searchParams.append('resource', FILES);
  const res = await ctx.ua.authorize(url.href, { username: USERNAME, password: PASSWORD, expectConsent: true });
  for (const text of ['Invoices API', 'Files API', 'Read your invoices', 'Read your files']) {
    expect(res.consentPage.text.includes(text), `consent page does not show "${text}": ${short(res.consentPage.text)}`);
  }
  const tokens = await oidc.authorizationCodeGrant(config, new URL(res.redirect),
    { pkceCodeVerifier: verifier, expectedState: state }, { resource: FILES });
  expectEq(tokens.scope, 'files:read', 'scope of the Files API token');
  const jwksUri = config.serverMetadata().jwks_uri;
  const files = await verifyAccessToken(tokens.access_token, jwksUri, ctx.issuer, FILES);
  expectEq(files.scope, 'files:read', 'scope claim of the Files API token');
  // The refresh names the other resource of the same grant.
  const inv = await oidc.refreshTokenGrant(config, tokens.refresh_token, { resource: INVOICES });
  const claims = await verifyAccessToken(inv.access_token, jwksUri, ctx.issuer, INVOICES);
  expectEq(claims.scope, SCOPE, 'scope claim of the Invoices API token from the refresh');
});

const { pg } = parseArgs();
const server = new MandateServer(BASE_CONFIG, { pg, label: 'openid-client' });
const status = await suite.run({ server }, async (failed) => {
  await server.stop();
  if (failed) server.dumpLogs();
  await server.cleanup();
});
process.exit(status);
