// Shared harness of the Node conformance suites (browser.mjs, openid_client.mjs);
// the Python twin is harness.py.
//
// - Suite: named checks run in order; prints `ok - name` / `FAIL - name: reason`
//   and `N passed, M failed`; exit status 1 when any check failed. A check that
//   needs the result of a failed one fails with "prerequisite missing".
// - MandateServer: one `mandate serve` on a free port with its own temporary
//   SQLite database (or a fresh PostgreSQL database `mandate_test_<random>` with
//   --pg; left for .ci/test to drop), keys directory and mandate.toml; the
//   operator CLI against it.
// - UserAgent: a plain-HTTP browser over fetch (cookie jar, manual redirects)
//   that reads mandate's HTML forms and drives login and consent.
// - verifyAccessToken: RFC 9068 checks with `jose` against the served JWKS.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as jose from 'jose';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.dirname(HERE);
export const INVOICES = 'https://api.example.com';
export const FILES = 'https://files.example.com';
export const ACR_PWD = 'urn:mandate:acr:pwd';
const READY_TIMEOUT_MS = 60_000;
export const HTTP_TIMEOUT_MS = 10_000;

// The resources of SPEC §1, as harness.py's BASE_CONFIG.
export const BASE_CONFIG = `\
[[resources]]
id = "https://api.example.com"
name = "Invoices API"

  [[resources.scopes]]
  name = "invoices:read"
  description = "Read your invoices"

  [[resources.scopes]]
  name = "invoices:write"
  description = "Create, change and dispute invoices for you"
  min_acr = "urn:mandate:acr:mfa"
  max_auth_age_secs = 300

  [[resources.scopes]]
  name = "payments:send"
  description = "Send a payment from your account"
  approval = true

[[resources]]
id = "https://files.example.com"
name = "Files API"

  [[resources.scopes]]
  name = "files:read"
  description = "Read your files"
`;

// ---------------------------------------------------------------------------
// Checks

export class CheckFailed extends Error {}

export function expect(cond, reason) {
  if (!cond) throw new CheckFailed(reason);
}

export function expectEq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new CheckFailed(`${what}: expected ${e}, got ${a}`);
}

export function need(ctx, ...keys) {
  for (const k of keys) {
    if (!(k in ctx)) throw new CheckFailed(`prerequisite missing: ${k} (an earlier check failed)`);
  }
}

export function short(text, limit = 400) {
  const t = String(text).split(/\s+/).join(' ').trim();
  return t.length <= limit ? t : `${t.slice(0, limit)}...`;
}

export class Suite {
  constructor(name) {
    this.name = name;
    this.checks = [];
  }

  check(name, fn) {
    this.checks.push([name, fn]);
  }

  /** Runs every check, then `cleanup(failed)`; returns the exit status. */
  async run(ctx, cleanup) {
    let passed = 0;
    let failed = 0;
    let stopping = false;
    const onSignal = async (sig) => {
      if (stopping) return;
      stopping = true;
      await cleanup(true).catch(() => {});
      process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    try {
      for (const [name, fn] of this.checks) {
        try {
          await fn(ctx);
          passed += 1;
          console.log(`ok - ${name}`);
        } catch (e) {
          failed += 1;
          if (e instanceof CheckFailed) {
            console.log(`FAIL - ${name}: ${e.message}`);
          } else {
            console.log(`FAIL - ${name}: ${e?.name ?? 'Error'}: ${short(e?.message ?? e, 600)}`);
            console.error(e?.stack ?? e);
            if (e?.cause) console.error('cause:', e.cause);
          }
        }
      }
    } finally {
      await cleanup(failed > 0);
    }
    console.log(`${passed} passed, ${failed} failed`);
    return failed ? 1 : 0;
  }
}

export function parseArgs() {
  const argv = process.argv.slice(2);
  const unknown = argv.filter((a) => a !== '--pg');
  if (unknown.length) {
    console.error(`unknown arguments: ${unknown.join(' ')} (only --pg)`);
    process.exit(2);
  }
  return { pg: argv.includes('--pg') };
}

// ---------------------------------------------------------------------------
// The server under test

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A fresh database `mandate_test_<random>` under $MANDATE_TEST_PG, via psql.
 *  Not dropped at the end (DROP DATABASE waits for a checkpoint, over a minute
 *  on a busy machine): .ci/test drops every `mandate_test_*` at its start. */
class PgDatabase {
  constructor() {
    const base = process.env.MANDATE_TEST_PG ?? '';
    if (!base) throw new CheckFailed('--pg needs MANDATE_TEST_PG (e.g. postgres://postgres@127.0.0.1:5432)');
    this.base = base.replace(/\/+$/, '');
    this.name = `mandate_test_${crypto.randomUUID().replaceAll('-', '')}`;
    this.psql(`CREATE DATABASE "${this.name}"`);
    this.url = `${this.base}/${this.name}`;
  }

  psql(sql) {
    const r = spawnSync('psql', [`${this.base}/postgres`, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (r.error) throw new CheckFailed(`psql: ${r.error.message} (Debian package postgresql-client)`);
    if (r.status !== 0) throw new CheckFailed(`psql ${sql}: exit ${r.status}: ${r.stderr.trim()}`);
  }
}

export function serverBinary() {
  return process.env.MANDATE_BIN || path.join(REPO, 'target', 'debug', 'mandate');
}

export class MandateServer {
  /** `config`: the mandate.toml text; `env`: extra environment; `pg`: PostgreSQL. */
  constructor(config, { env = {}, pg = false, label = 'mandate' } = {}) {
    this.binary = serverBinary();
    this.workdir = fs.mkdtempSync(path.join(os.tmpdir(), `mandate-conformance-${label}-`));
    this.configPath = path.join(this.workdir, 'mandate.toml');
    fs.writeFileSync(this.configPath, config);
    this.logPath = path.join(this.workdir, 'server.log');
    this.extraEnv = env;
    this.usePg = pg;
    this.pg = null;
    this.proc = null;
    this.port = 0;
    this.issuer = '';
    this.env = {};
  }

  databaseUrl() {
    if (this.usePg) {
      this.pg ??= new PgDatabase();
      return this.pg.url;
    }
    return `sqlite://${this.workdir}/m.db`;
  }

  envFor(port) {
    // The caller's MANDATE_* settings (MANDATE_TEST_PG included) stay out.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MANDATE_')));
    return {
      ...env,
      MANDATE_CONFIG: this.configPath,
      MANDATE_BIND: `127.0.0.1:${port}`,
      MANDATE_ISSUER: `http://127.0.0.1:${port}`,
      MANDATE_DATABASE_URL: this.databaseUrl(),
      MANDATE_KEYS_DIR: path.join(this.workdir, 'keys'),
      NO_COLOR: '1',
      ...this.extraEnv,
    };
  }

  async start() {
    try {
      fs.accessSync(this.binary, fs.constants.X_OK);
    } catch {
      throw new CheckFailed(`server binary ${this.binary} is not executable (run \`cargo build\`)`);
    }
    let lastError = 'not started';
    // A port found free can be taken before mandate binds it: retry.
    for (let attempt = 0; attempt < 3; attempt += 1) {
      this.port = await freePort();
      this.issuer = `http://127.0.0.1:${this.port}`;
      this.env = this.envFor(this.port);
      const log = fs.openSync(this.logPath, 'a');
      const proc = spawn(this.binary, ['serve', '--config', this.configPath], {
        env: this.env,
        cwd: this.workdir,
        stdio: ['ignore', log, log],
      });
      fs.closeSync(log);
      this.proc = proc;
      let exited = null;
      proc.on('exit', (code, sig) => {
        exited = { code, sig };
      });
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while (Date.now() < deadline) {
        if (exited) {
          lastError = `server exited (${exited.code ?? exited.sig}) before /readyz was 200: ${short(this.logs().slice(-600))}`;
          this.proc = null;
          break;
        }
        try {
          const r = await fetch(`${this.issuer}/readyz`, { signal: AbortSignal.timeout(2000) });
          if (r.status === 200) return;
          lastError = `/readyz answered ${r.status}`;
        } catch (e) {
          lastError = `/readyz: ${e.message}`;
        }
        await sleep(50);
      }
      if (!exited) {
        await this.stop();
        throw new CheckFailed(`not ready after ${READY_TIMEOUT_MS / 1000}s: ${lastError}`);
      }
    }
    throw new CheckFailed(lastError);
  }

  cli(args, stdin) {
    fs.appendFileSync(this.logPath, `--- mandate ${args.join(' ')}\n`);
    const r = spawnSync(this.binary, [...args, '--config', this.configPath], {
      env: this.env,
      cwd: this.workdir,
      input: stdin ?? '',
      encoding: 'utf8',
      timeout: 60_000,
    });
    fs.appendFileSync(this.logPath, `--- exit ${r.status}; stderr:\n${r.stderr}`);
    return r;
  }

  cliJson(args, stdin) {
    const r = this.cli([...args, '--json'], stdin);
    expect(r.status === 0, `\`mandate ${args.join(' ')}\` exit ${r.status}: ${short(r.stderr.slice(-500))}`);
    let out;
    try {
      out = JSON.parse(r.stdout);
    } catch {
      throw new CheckFailed(`\`mandate ${args.join(' ')}\` stdout is not JSON: ${r.stdout}`);
    }
    expect(out && typeof out === 'object' && !Array.isArray(out), `stdout is not a JSON object: ${r.stdout}`);
    return out;
  }

  createUser(username, password) {
    return this.cliJson(['user', 'create', '--username', username, '--password-stdin'], `${password}\n`);
  }

  createClient(...args) {
    const out = this.cliJson(['client', 'create', ...args]);
    expect(typeof out.client_id === 'string' && out.client_id, `no client_id in ${Object.keys(out)}`);
    return out;
  }

  async stop() {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const done = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const killed = await Promise.race([done.then(() => false), sleep(15_000).then(() => true)]);
    if (killed) {
      proc.kill('SIGKILL');
      await done;
    }
  }

  /** Stops the server and removes its files (see PgDatabase on the database). */
  async cleanup() {
    await this.stop();
    fs.rmSync(this.workdir, { recursive: true, force: true });
  }

  logs() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch (e) {
      return `(cannot read server log: ${e.message})`;
    }
  }

  dumpLogs() {
    console.error(`----- ${path.basename(this.workdir)} server log -----\n${this.logs()}----- end of server log -----`);
  }
}

// ---------------------------------------------------------------------------
// JOSE and HTTP helpers

export const b64url = (buf) => Buffer.from(buf).toString('base64url');

export function pkcePair() {
  const verifier = b64url(crypto.randomBytes(32));
  return { verifier, challenge: b64url(crypto.createHash('sha256').update(verifier).digest()) };
}

export async function getJson(url) {
  const r = await fetch(url, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  expectEq(r.status, 200, `GET ${url} status`);
  const text = await r.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new CheckFailed(`GET ${url} is not JSON: ${short(text)}`);
  }
}

/** POST application/x-www-form-urlencoded; returns { status, headers, json, text }. */
export async function postForm(url, form, headers = {}) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
    redirect: 'manual',
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: r.status, headers: r.headers, json, text };
}

/** Verifies an RFC 9068 access token with `jose` against the issuer's JWKS
 *  (fetched from `jwksUri`): ES256, typ at+jwt, iss, exactly one aud. */
export async function verifyAccessToken(token, jwksUri, issuer, audience) {
  expect(typeof token === 'string' && token.split('.').length === 3, `not a compact JWS: ${String(token).slice(0, 80)}`);
  const jwks = jose.createRemoteJWKSet(new URL(jwksUri));
  let result;
  try {
    result = await jose.jwtVerify(token, jwks, {
      issuer,
      audience,
      algorithms: ['ES256'],
      typ: 'at+jwt',
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id'],
    });
  } catch (e) {
    throw new CheckFailed(`access token does not verify: ${e.code ?? e.name}: ${e.message}`);
  }
  const { payload, protectedHeader } = result;
  expect(protectedHeader.kid, `no kid in the JWT header ${JSON.stringify(protectedHeader)}`);
  const aud = payload.aud;
  expect(aud === audience || (Array.isArray(aud) && aud.length === 1 && aud[0] === audience),
    `aud: expected exactly ${audience}, got ${JSON.stringify(aud)}`);
  return payload;
}

/** The claims SPEC §3 requires of a user-delegated code-flow token. */
export function checkUserTokenClaims(claims, { username, clientId, scope, agent = true, since }) {
  expectEq(claims.sub, username, 'sub (the user)');
  expectEq(claims.client_id, clientId, 'client_id');
  expectEq(String(claims.scope ?? '').split(' ').sort(), scope.split(' ').sort(), 'scope');
  expectEq(claims.acr, ACR_PWD, 'acr');
  expectEq(claims.amr, ['pwd'], 'amr');
  expect(Number.isInteger(claims.auth_time), `auth_time is not an integer: ${claims.auth_time}`);
  const now = Math.floor(Date.now() / 1000);
  if (since !== undefined) {
    expect(claims.auth_time >= since - 5 && claims.auth_time <= now + 5,
      `auth_time ${claims.auth_time} not within this run (${since}..${now})`);
  }
  expect(claims.exp - claims.iat <= 3600, `lifetime ${claims.exp - claims.iat}s exceeds 3600 s`);
  if (agent) {
    expectEq(claims.client_type, 'ai-agent', 'client_type');
    expectEq(claims.act, { sub: clientId, client_type: 'ai-agent' }, 'act');
  }
}

export function authorizeUrl(metadata, params) {
  const u = new URL(metadata.authorization_endpoint);
  for (const [k, v] of Object.entries(params)) {
    for (const item of Array.isArray(v) ? v : [v]) u.searchParams.append(k, item);
  }
  return u.href;
}

// ---------------------------------------------------------------------------
// HTML forms, read without a DOM: mandate's pages are well-formed, and only
// the tags and attributes a form submission depends on are needed.

const decodeEntities = (s) =>
  s.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos|#39);/gi, (m, e) => {
    const k = e.toLowerCase();
    if (k === 'amp') return '&';
    if (k === 'lt') return '<';
    if (k === 'gt') return '>';
    if (k === 'quot') return '"';
    if (k === 'apos' || k === '#39') return "'";
    if (k.startsWith('#x')) return String.fromCodePoint(parseInt(k.slice(2), 16));
    return String.fromCodePoint(parseInt(k.slice(1), 10));
  });

function attrsOf(tagText) {
  const attrs = {};
  const re = /([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?/g;
  const body = tagText.replace(/^<\s*[a-z0-9]+/i, '').replace(/\/?>$/, '');
  let m;
  while ((m = re.exec(body))) attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  return attrs;
}

const textOf = (html) => decodeEntities(html.replace(/<[^>]*>/g, ' ')).split(/\s+/).join(' ').trim();

export class FormPage {
  constructor(url, status, body) {
    this.url = url;
    this.status = status;
    this.body = body;
    const visible = body.replace(/<(script|style|title)[\s\S]*?<\/\1>/gi, ' ');
    this.text = textOf(visible);
    this.labels = {};
    for (const m of visible.matchAll(/<label\b([^>]*)>([\s\S]*?)<\/label>/gi)) {
      const a = attrsOf(`<label ${m[1]}>`);
      if (a.for) this.labels[a.for] = textOf(m[2]);
    }
    this.forms = [];
    for (const m of visible.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
      const a = attrsOf(`<form ${m[1]}>`);
      const controls = [];
      // A <button> with its text, or a void/other control.
      const re = /<button\b([^>]*)>([\s\S]*?)<\/button>|<(input|select|textarea)\b([^>]*)>/gi;
      for (const c of m[2].matchAll(re)) {
        const tag = c[3] ? c[3].toLowerCase() : 'button';
        const at = attrsOf(`<${tag} ${c[3] ? c[4] : c[1]}>`);
        controls.push({
          tag,
          type: (at.type ?? (tag === 'input' ? 'text' : tag === 'button' ? 'submit' : tag)).toLowerCase(),
          name: at.name ?? '',
          value: at.value ?? '',
          id: at.id ?? '',
          checked: 'checked' in at,
          text: tag === 'button' ? textOf(c[2] ?? '') : '',
        });
      }
      this.forms.push({ action: a.action ?? '', method: (a.method ?? 'get').toLowerCase(), controls });
    }
  }

  static isButton(c, text) {
    return (c.tag === 'button' && c.text === text) || (c.type === 'submit' && c.tag === 'input' && c.value === text);
  }

  formWithButton(text) {
    const found = this.forms.filter((f) => f.controls.some((c) => FormPage.isButton(c, text)));
    expect(found.length === 1, `${this.url}: ${found.length} forms with a button "${text}"; page: ${short(this.text)}`);
    return found[0];
  }

  controlLabelled(form, label) {
    const ids = Object.entries(this.labels).filter(([, t]) => t === label).map(([id]) => id);
    const found = form.controls.filter((c) => c.id && ids.includes(c.id));
    expect(found.length === 1, `${this.url}: ${found.length} controls labelled "${label}"; labels ${JSON.stringify(this.labels)}`);
    return found[0];
  }

  checkboxLabels(form) {
    const out = {};
    for (const c of form.controls) {
      if (c.type === 'checkbox' && c.name === 'scope') out[this.labels[c.id] ?? ''] = [c.value, c.checked];
    }
    return out;
  }

  /** The data a browser submits when `button` is clicked. */
  submission(form, button, fill = {}, untick = []) {
    const data = new URLSearchParams();
    const clicked = form.controls.filter((c) => FormPage.isButton(c, button));
    expect(clicked.length === 1, `${clicked.length} buttons "${button}" in the form`);
    for (const c of form.controls) {
      if (!c.name) continue;
      if (c.tag === 'button' || ['submit', 'image', 'reset'].includes(c.type)) {
        if (c === clicked[0]) data.append(c.name, c.value);
      } else if (c.type === 'checkbox' || c.type === 'radio') {
        if (c.checked && !untick.includes(c.value)) data.append(c.name, c.value || 'on');
      } else {
        data.append(c.name, fill[c.name] ?? c.value);
      }
    }
    const missing = Object.keys(fill).filter((n) => !form.controls.some((c) => c.name === n));
    expect(missing.length === 0, `form ${form.action} has no fields ${missing}`);
    return data;
  }
}

/** A browser without JavaScript over fetch: cookies, manual redirects, forms. */
export class UserAgent {
  constructor(issuer) {
    this.origin = new URL(issuer).origin;
    this.cookies = new Map(); // name -> value (one origin only: mandate's)
  }

  cookieHeader() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  remember(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a)) || value === '';
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async request(method, url, body) {
    const headers = { 'user-agent': 'mandate-conformance (node fetch)' };
    if (new URL(url).origin === this.origin && this.cookies.size) headers.cookie = this.cookieHeader();
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(url, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    if (new URL(url).origin === this.origin) this.remember(res);
    return { status: res.status, location: res.headers.get('location'), text: await res.text(), headers: res.headers };
  }

  /** Opens `url` and answers login (Username, Password, Sign in) and consent
   *  (`decision`: Allow or Deny) until mandate redirects off its origin.
   *  Returns { redirect, params, steps, loginPage, consentPage }. */
  async authorize(url, { username, password, decision = 'Allow', untick = [], expectLogin, expectConsent } = {}) {
    const steps = [];
    let loginPage = null;
    let consentPage = null;
    let method = 'GET';
    let target = url;
    let body;
    for (let i = 0; i < 12; i += 1) {
      const r = await this.request(method, target, body);
      steps.push({ method, url: target, status: r.status, location: r.location });
      if ([301, 302, 303, 307, 308].includes(r.status)) {
        expect(r.location, `${method} ${target}: ${r.status} without Location`);
        const next = new URL(r.location, target).href;
        if (new URL(next).origin !== this.origin) {
          if (expectLogin !== undefined) expectEq(loginPage !== null, expectLogin, 'login page shown');
          if (expectConsent !== undefined) expectEq(consentPage !== null, expectConsent, 'consent page shown');
          const u = new URL(next);
          const params = {};
          for (const [k, v] of u.searchParams) {
            expect(!(k in params), `repeated parameter ${k} in ${next}`);
            params[k] = v;
          }
          return { redirect: next, params, steps, loginPage, consentPage };
        }
        method = 'GET';
        target = next;
        body = undefined;
        continue;
      }
      const page = new FormPage(target, r.status, r.text);
      expect(r.status === 200, `${method} ${short(target, 200)} answered ${r.status}: ${short(page.text)}`);
      const p = new URL(target).pathname;
      let form;
      if (p === '/login') {
        expect(!loginPage, `the login page came back after signing in: ${short(page.text)}`);
        loginPage = page;
        form = page.formWithButton('Sign in');
        const user = page.controlLabelled(form, 'Username');
        const pwd = page.controlLabelled(form, 'Password');
        expectEq(pwd.type, 'password', 'type of the Password input');
        body = page.submission(form, 'Sign in', { [user.name]: username, [pwd.name]: password });
      } else if (p === '/consent') {
        expect(!consentPage, 'the consent page came back after a decision');
        consentPage = page;
        form = page.formWithButton(decision);
        body = page.submission(form, decision, {}, untick);
      } else {
        throw new CheckFailed(`unexpected page ${short(target, 200)}: ${short(page.text)}`);
      }
      method = form.method.toUpperCase();
      expectEq(method, 'POST', `method of the form on ${p}`);
      target = new URL(form.action || target, target).href;
      expect(new URL(target).origin === this.origin, `form on ${p} posts off-origin to ${target}`);
    }
    throw new CheckFailed(`no redirect to the client after ${steps.length} steps: ${JSON.stringify(steps)}`);
  }
}
