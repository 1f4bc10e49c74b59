// Real-browser conformance: Debian's Chromium driven by Playwright
// (playwright-core, no browser download) through mandate's login and consent
// pages, the way a person with a keyboard or a screen reader uses them:
// every element is found by its label or role, never by CSS.
//
// The client's redirect_uri is a tiny HTTP server of this script on 127.0.0.1
// that records every query it receives; the code it gets is exchanged with a
// plain fetch and the token verified with `jose` against /jwks.json.
// Full-page screenshots (desktop 1280×800, phone 390×844) of the login,
// consent and error pages go to conformance/screenshots/ (not with --pg).
//
//   node browser.mjs [--pg]        (through conformance/run.sh)
// CHROMIUM overrides the browser (default /usr/bin/chromium).

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  BASE_CONFIG, CheckFailed, FILES, HERE, INVOICES, MandateServer, Suite, authorizeUrl, checkUserTokenClaims, expect,
  expectEq, getJson, need, parseArgs, pkcePair, postForm, short, verifyAccessToken,
} from './harness.mjs';

const USERNAME = 'alice';
const PASSWORD = 'correct horse battery staple';
const CLIENT_NAME = 'Invoice Helper';
const SCOPE = 'invoices:read';
const SHOTS = path.join(HERE, 'screenshots');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const UI_TIMEOUT_MS = 10_000;

const { pg } = parseArgs();
const suite = new Suite(pg ? 'browser (PostgreSQL)' : 'browser');

/** The client's redirect_uri: records each request's path and query. */
function startListener() {
  const hits = [];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://127.0.0.1');
    if (u.pathname === '/favicon.ico') {
      // The browser's own request, not a redirect from mandate.
      res.writeHead(404);
      res.end();
      return;
    }
    hits.push({ path: u.pathname, params: Object.fromEntries(u.searchParams) });
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Client</title><link rel="icon" href="data:,"><h1>Callback received</h1>');
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, hits, port: server.address().port }));
  });
}

/** Full-page screenshots at desktop and phone size (then back to desktop). */
async function screenshots(ctx, name) {
  if (pg) return; // the SQLite run takes them; the pages are the same
  const page = ctx.page;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: path.join(SHOTS, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(DESKTOP);
}

/** An authorization URL for the test client (fresh PKCE pair; state given). */
function authUrl(ctx, { state, resource = INVOICES, scope = SCOPE, ...extra }) {
  const { verifier, challenge } = pkcePair();
  const url = authorizeUrl(ctx.metadata, {
    response_type: 'code', client_id: ctx.clientId, redirect_uri: ctx.redirectUri, scope, state,
    code_challenge: challenge, code_challenge_method: 'S256', resource, ...extra,
  });
  return { url, verifier };
}

/** Clicks `button` on the consent page; returns the POST /consent response
 *  and the listener hit that the browser then delivered. */
async function decide(ctx, button) {
  const before = ctx.listener.hits.length;
  const [resp] = await Promise.all([
    ctx.page.waitForResponse((r) => new URL(r.url()).pathname === '/consent' && r.request().method() === 'POST'),
    ctx.page.getByRole('button', { name: button, exact: true }).click(),
  ]);
  await ctx.page.waitForURL((u) => u.origin === ctx.listenerOrigin);
  expectEq(ctx.listener.hits.length, before + 1, 'requests at the redirect listener');
  return { resp, hit: ctx.listener.hits.at(-1) };
}

async function exchange(ctx, code, verifier, resource = INVOICES) {
  return postForm(ctx.metadata.token_endpoint, {
    grant_type: 'authorization_code', code, redirect_uri: ctx.redirectUri, code_verifier: verifier,
    client_id: ctx.clientId, resource,
  });
}

/** Every mandate page URL the browser navigated to while `fn` ran. */
async function navigations(ctx, fn) {
  const seen = [];
  const onNav = (frame) => {
    if (frame === ctx.page.mainFrame()) seen.push(frame.url());
  };
  ctx.page.on('framenavigated', onNav);
  try {
    await fn();
  } finally {
    ctx.page.off('framenavigated', onNav);
  }
  return seen;
}

// ---------------------------------------------------------------------------

suite.check('setup: redirect listener, mandate, user alice, public ai-agent client, Chromium', async (ctx) => {
  expect(fs.existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium (.ci/test does), or set CHROMIUM`);
  ctx.listener = await startListener();
  ctx.listenerOrigin = `http://127.0.0.1:${ctx.listener.port}`;
  ctx.redirectUri = `${ctx.listenerOrigin}/callback`;
  await ctx.server.start();
  ctx.issuer = ctx.server.issuer;
  ctx.server.createUser(USERNAME, PASSWORD);
  ctx.clientId = ctx.server.createClient('--name', CLIENT_NAME, '--public', '--redirect-uri', ctx.redirectUri,
    '--resource', INVOICES, '--resource', FILES, '--scope', SCOPE, '--scope', 'files:read').client_id;
  ctx.metadata = await getJson(`${ctx.issuer}/.well-known/oauth-authorization-server`);
  ctx.userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mandate-conformance-chromium-'));
  ctx.browser = await chromium.launchPersistentContext(ctx.userDataDir, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: DESKTOP,
  });
  ctx.page = ctx.browser.pages()[0] ?? (await ctx.browser.newPage());
  ctx.page.setDefaultTimeout(UI_TIMEOUT_MS);
});

suite.check('signed out: /authorize redirects to the login page', async (ctx) => {
  need(ctx, 'page');
  ctx.flow1 = authUrl(ctx, { state: 'state-allow' });
  await ctx.page.goto(ctx.flow1.url);
  const u = new URL(ctx.page.url());
  expectEq(u.origin, ctx.issuer, 'origin of the page');
  expectEq(u.pathname, '/login', 'page after /authorize');
});

suite.check('login page: inputs labelled Username and Password (<label for>), button Sign in', async (ctx) => {
  need(ctx, 'flow1');
  const page = ctx.page;
  for (const [label, type] of [['Username', 'text'], ['Password', 'password']]) {
    const input = page.getByLabel(label, { exact: true });
    expectEq(await input.count(), 1, `inputs labelled ${label}`);
    expect(await input.isVisible(), `${label} input is not visible`);
    const info = await input.evaluate((el) => ({
      tag: el.tagName, type: el.type, labels: [...(el.labels ?? [])].map((l) => ({ for: l.htmlFor, text: l.textContent.trim() })), id: el.id,
    }));
    expectEq([info.tag, info.type], ['INPUT', type], `${label}: element and type`);
    expectEq(info.labels, [{ for: info.id, text: label }], `${label}: its <label for>`);
  }
  expectEq(await page.getByRole('textbox', { name: 'Username', exact: true }).count(), 1, 'textbox role named Username');
  expect(await page.getByRole('button', { name: 'Sign in', exact: true }).isVisible(), 'no visible Sign in button');
  await screenshots(ctx, 'login');
});

suite.check("login page: CSP frame-ancestors 'none'", async (ctx) => {
  need(ctx, 'flow1');
  const r = await fetch(ctx.page.url());
  const csp = r.headers.get('content-security-policy') ?? '';
  expect(/frame-ancestors\s+'none'/.test(csp), `Content-Security-Policy: ${JSON.stringify(csp)}`);
});

suite.check('wrong password: the login page shows an error message', async (ctx) => {
  need(ctx, 'flow1');
  // auth_time is the sign-in, not the token exchange: the checks between
  // them may take seconds on a loaded machine.
  ctx.signInAt = Math.floor(Date.now() / 1000);
  const page = ctx.page;
  await page.getByLabel('Username', { exact: true }).fill(USERNAME);
  await page.getByLabel('Password', { exact: true }).fill('not-the-password');
  const [resp] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/login' && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Sign in', exact: true }).click(),
  ]);
  await page.waitForLoadState();
  expect(resp.status() >= 400 && resp.status() < 500, `status of the refused sign-in: ${resp.status()}`);
  expectEq(new URL(page.url()).pathname, '/login', 'page after a wrong password');
  const error = page.getByText(/incorrect|wrong|invalid|does not match|did not match/i).first();
  try {
    await error.waitFor({ state: 'visible', timeout: 5000 });
  } catch {
    throw new CheckFailed(`no visible error message: ${short(await page.locator('body').innerText())}`);
  }
  expect(await page.getByLabel('Password', { exact: true }).isVisible(), 'the Password input is gone');
  if (!pg) await page.screenshot({ path: path.join(SHOTS, 'login-error-desktop.png'), fullPage: true });
});

suite.check('keyboard sign-in (type the password, press Enter) reaches the consent page', async (ctx) => {
  need(ctx, 'flow1');
  const page = ctx.page;
  await page.getByLabel('Username', { exact: true }).fill(USERNAME);
  await page.getByLabel('Password', { exact: true }).focus();
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.pathname === '/consent');
  expectEq(new URL(page.url()).origin, ctx.issuer, 'origin of the consent page');
  ctx.signedIn = true;
});

suite.check('session cookies: HttpOnly and SameSite=Lax', async (ctx) => {
  need(ctx, 'signedIn');
  const cookies = (await ctx.browser.cookies(ctx.issuer));
  expect(cookies.length > 0, 'no cookie for the issuer after signing in');
  for (const c of cookies) {
    expect(c.httpOnly, `cookie ${c.name} is not HttpOnly`);
    expectEq(c.sameSite, 'Lax', `SameSite of cookie ${c.name}`);
  }
});

suite.check('consent page: client name, AI agent mark, resource name, ticked scope, Allow and Deny', async (ctx) => {
  need(ctx, 'signedIn');
  const page = ctx.page;
  expect(await page.getByText(CLIENT_NAME).first().isVisible(), `client name "${CLIENT_NAME}" not visible`);
  expect(await page.getByText('AI agent', { exact: true }).first().isVisible(), '"AI agent" mark not visible');
  expect(await page.getByText('Invoices API').first().isVisible(), 'resource name "Invoices API" not visible');
  const box = page.getByRole('checkbox', { name: 'Read your invoices', exact: true });
  expectEq(await box.count(), 1, 'checkboxes labelled "Read your invoices"');
  expect(await box.isChecked(), '"Read your invoices" is not ticked by default');
  // Operable from the keyboard: Space toggles the focused checkbox.
  await box.focus();
  await page.keyboard.press('Space');
  expect(!(await box.isChecked()), 'Space on the focused checkbox did not untick it');
  await page.keyboard.press('Space');
  expect(await box.isChecked(), 'Space on the focused checkbox did not tick it again');
  for (const b of ['Allow', 'Deny']) {
    expect(await page.getByRole('button', { name: b, exact: true }).isVisible(), `no visible ${b} button`);
  }
  expect(!(await page.getByText('Read your files').count()), 'a scope that was not requested is shown');
});

suite.check('Allow: 303 to the redirect_uri; the listener gets code, state and iss', async (ctx) => {
  need(ctx, 'signedIn');
  const { resp, hit } = await decide(ctx, 'Allow');
  expectEq(resp.status(), 303, 'status of POST /consent');
  expectEq(hit.path, '/callback', 'callback path');
  expect(hit.params.code, `no code: ${JSON.stringify(hit.params)}`);
  expectEq(hit.params.state, 'state-allow', 'state');
  expectEq(hit.params.iss, ctx.issuer, 'iss');
  expect(await ctx.page.getByRole('heading', { name: 'Callback received' }).isVisible(), 'the listener page is not shown');
  ctx.code1 = hit.params.code;
});

suite.check('the code exchanges at /token; the access token verifies against /jwks.json', async (ctx) => {
  need(ctx, 'code1');
  const since = ctx.signInAt;
  const r = await exchange(ctx, ctx.code1, ctx.flow1.verifier);
  expectEq(r.status, 200, `token response (${short(r.text)})`);
  expectEq(r.headers.get('cache-control'), 'no-store', 'Cache-Control');
  expectEq(r.json.token_type?.toLowerCase(), 'bearer', 'token_type');
  expectEq(r.json.scope, SCOPE, 'scope');
  expect(r.json.refresh_token, 'no refresh_token');
  const claims = await verifyAccessToken(r.json.access_token, ctx.metadata.jwks_uri, ctx.issuer, INVOICES);
  checkUserTokenClaims(claims, { username: USERNAME, clientId: ctx.clientId, scope: SCOPE, since });
});

suite.check('second authorize, same client and scopes: no login, no consent (remembered)', async (ctx) => {
  need(ctx, 'code1');
  const before = ctx.listener.hits.length;
  const flow = authUrl(ctx, { state: 'state-again' });
  const seen = await navigations(ctx, async () => {
    await ctx.page.goto(flow.url);
    await ctx.page.waitForURL((u) => u.origin === ctx.listenerOrigin);
  });
  const shown = seen.filter((u) => ['/login', '/consent'].includes(new URL(u).pathname));
  expectEq(shown, [], 'login/consent pages shown');
  expectEq(ctx.listener.hits.length, before + 1, 'requests at the redirect listener');
  const hit = ctx.listener.hits.at(-1);
  expectEq(hit.params.state, 'state-again', 'state');
  expectEq(hit.params.iss, ctx.issuer, 'iss');
  expect(hit.params.code, `no code: ${JSON.stringify(hit.params)}`);
  const r = await exchange(ctx, hit.params.code, flow.verifier);
  expectEq(r.status, 200, `code exchange (${short(r.text)})`);
});

suite.check('prompt=consent asks again; Deny: access_denied with state and iss, no code', async (ctx) => {
  need(ctx, 'code1');
  const flow = authUrl(ctx, { state: 'state-deny', prompt: 'consent' });
  await ctx.page.goto(flow.url);
  expectEq(new URL(ctx.page.url()).pathname, '/consent', 'page with prompt=consent');
  const { resp, hit } = await decide(ctx, 'Deny');
  expect([302, 303].includes(resp.status()), `status of POST /consent: ${resp.status()}`);
  expectEq(hit.path, '/callback', 'callback path');
  expectEq(hit.params.error, 'access_denied', 'error');
  expectEq(hit.params.state, 'state-deny', 'state');
  expectEq(hit.params.iss, ctx.issuer, 'iss');
  expect(!('code' in hit.params), 'a code came with access_denied');
});

suite.check('two resources: consent shows both names and descriptions; a token for each audience', async (ctx) => {
  need(ctx, 'code1');
  const page = ctx.page;
  const flow = authUrl(ctx, { state: 'state-two', resource: [INVOICES, FILES], scope: `${SCOPE} files:read` });
  await page.goto(flow.url);
  expectEq(new URL(page.url()).pathname, '/consent', 'page for a new scope set');
  for (const name of ['Invoices API', 'Files API']) {
    expect(await page.getByText(name).first().isVisible(), `resource name "${name}" not visible`);
  }
  for (const d of ['Read your invoices', 'Read your files']) {
    expect(await page.getByRole('checkbox', { name: d, exact: true }).isChecked(), `"${d}" not ticked`);
  }
  await screenshots(ctx, 'consent');
  const { hit } = await decide(ctx, 'Allow');
  expectEq(hit.params.state, 'state-two', 'state');
  const r = await exchange(ctx, hit.params.code, flow.verifier, FILES);
  expectEq(r.status, 200, `token for ${FILES} (${short(r.text)})`);
  const claims = await verifyAccessToken(r.json.access_token, ctx.metadata.jwks_uri, ctx.issuer, FILES);
  checkUserTokenClaims(claims, { username: USERNAME, clientId: ctx.clientId, scope: 'files:read' });
  ctx.twoResources = true;
});

suite.check('unticking a scope on the consent page leaves it out of the grant', async (ctx) => {
  need(ctx, 'twoResources');
  const page = ctx.page;
  const flow = authUrl(ctx, { state: 'state-untick', resource: [INVOICES, FILES], scope: `${SCOPE} files:read`, prompt: 'consent' });
  await page.goto(flow.url);
  await page.getByRole('checkbox', { name: 'Read your files', exact: true }).uncheck();
  const { hit } = await decide(ctx, 'Allow');
  expect(hit.params.code, `no code: ${JSON.stringify(hit.params)}`);
  // The grant now holds invoices:read only: a token for the Files API is refused.
  const r = await exchange(ctx, hit.params.code, flow.verifier, FILES);
  expect(r.status === 400 && r.json?.error && !r.json.access_token,
    `a token for ${FILES} after unticking its only scope: ${r.status} ${short(r.text)}`);
});

suite.check('a client of type web: consent shows its name but no AI agent mark', async (ctx) => {
  need(ctx, 'signedIn');
  const name = 'Billing Dashboard';
  const clientId = ctx.server.createClient('--name', name, '--public', '--client-type', 'web',
    '--redirect-uri', ctx.redirectUri, '--resource', INVOICES, '--scope', SCOPE).client_id;
  const flow = authUrl(ctx, { state: 'state-web', client_id: clientId });
  await ctx.page.goto(flow.url);
  expectEq(new URL(ctx.page.url()).pathname, '/consent', 'page for a new client');
  expect(await ctx.page.getByText(name).first().isVisible(), `client name "${name}" not visible`);
  expectEq(await ctx.page.getByText('AI agent', { exact: true }).count(), 0, '"AI agent" marks for a web client');
  const { hit } = await decide(ctx, 'Deny');
  expectEq(hit.params.error, 'access_denied', 'error after Deny');
});

for (const [what, params] of [
  ['unknown client_id', { client_id: 'no-such-client' }],
  ['unregistered redirect_uri', { redirect_uri: 'LISTENER/evil' }],
]) {
  suite.check(`${what}: error page 400, the browser stays on mandate (no redirect)`, async (ctx) => {
    need(ctx, 'page');
    const before = ctx.listener.hits.length;
    const p = { ...params };
    if (p.redirect_uri) p.redirect_uri = p.redirect_uri.replace('LISTENER', ctx.listenerOrigin);
    const flow = authUrl(ctx, { state: 'state-error', ...p });
    const resp = await ctx.page.goto(flow.url);
    expectEq(resp.status(), 400, 'status');
    expectEq(new URL(ctx.page.url()).origin, ctx.issuer, 'origin of the page shown');
    expectEq(new URL(ctx.page.url()).pathname, '/authorize', 'path of the page shown');
    expect(await ctx.page.getByRole('heading').first().isVisible(), 'the error page has no visible heading');
    await ctx.page.waitForTimeout(200); // a late redirect would reach the listener by now
    expectEq(ctx.listener.hits.length, before, 'requests at the redirect listener');
    if (what === 'unknown client_id') await screenshots(ctx, 'error');
  });
}

suite.check('the redirect listener received only the expected callbacks', async (ctx) => {
  need(ctx, 'listener');
  const paths = ctx.listener.hits.map((h) => h.path);
  expect(paths.every((p) => p === '/callback'), `paths at the listener: ${JSON.stringify(paths)}`);
});

const server = new MandateServer(BASE_CONFIG, { pg, label: 'browser' });
const ctx = { server };
const status = await suite.run(ctx, async (failed) => {
  await ctx.browser?.close().catch(() => {});
  if (ctx.userDataDir) fs.rmSync(ctx.userDataDir, { recursive: true, force: true });
  ctx.listener?.server.close();
  await server.stop();
  if (failed) server.dumpLogs();
  await server.cleanup();
});
process.exit(status);
