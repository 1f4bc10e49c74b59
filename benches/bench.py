#!/usr/bin/env python3
"""mandate against node-oidc-provider, same machine, same run (SPEC §11).

Started by benches/run.sh, which installs the tools and builds mandate; see
benches/README.md. Each server is pinned to core 0 and wrk to core 1; every
cell runs in rounds alternating mandate, node-oidc-provider, mandate, ... so
that drift of the machine cancels, and the table shows the medians.

Only the Python standard library is used.
"""

import argparse
import base64
import datetime
import hashlib
import html.parser
import http.client
import http.cookiejar
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WRK_DIR = os.path.join(HERE, "wrk")
OP_DIR = os.path.join(HERE, "oidc-provider")

API = "https://api.example.com"
FILES = "https://files.example.com"
OPAQUE = "https://opaque.example.com"  # node-oidc-provider's opaque-token resource
REDIRECT = "http://127.0.0.1:9/cb"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
WRK_THREADS = 2
CONNECTIONS = (16, 64)
USER, PASSWORD = "bench", "bench-password-1234"

MANDATE_TOML = """\
# Written by benches/bench.py for one benchmark run.
[[resources]]
id = "https://api.example.com"
name = "Invoices API"

  [[resources.scopes]]
  name = "invoices:read"
  description = "Read your invoices"

[[resources]]
id = "https://files.example.com"
name = "Files API"

  [[resources.scopes]]
  name = "files:read"
  description = "Read your files"
"""


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# Everything this run starts or makes, undone in reverse on any exit.


class Cleanup:
    def __init__(self):
        self.actions = []

    def add(self, fn, what):
        self.actions.append((fn, what))

    def run(self):
        while self.actions:
            fn, what = self.actions.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning up
                log(f"cleanup of {what} failed: {e}")


CLEANUP = Cleanup()


def stop_process(proc, grace=15.0):
    """SIGTERM, then SIGKILL after `grace` seconds; only this pid."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def spawn(cmd, **kw):
    proc = subprocess.Popen(cmd, **kw)
    CLEANUP.add(lambda: stop_process(proc), f"process {proc.pid} ({os.path.basename(cmd[0])})")
    return proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# HTTP (no redirects are followed).


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def basic(client_id, secret):
    q = lambda s: urllib.parse.quote(s, safe="-._~")  # noqa: E731 (RFC 6749 §2.3.1)
    return "Basic " + base64.b64encode(f"{q(client_id)}:{q(secret)}".encode()).decode()


def http_request(base, method, path, form=None, auth=None, timeout=10):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    headers = {}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if auth:
        headers["Authorization"] = auth
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data
    finally:
        conn.close()


def post_json(base, path, form, auth=None):
    status, data = http_request(base, "POST", path, form, auth)
    try:
        doc = json.loads(data)
    except ValueError:
        doc = {"_raw": data[:200].decode(errors="replace")}
    return status, doc


def token(base, form, auth):
    status, doc = post_json(base, "/token", form, auth)
    if status != 200 or "access_token" not in doc:
        raise BenchError(f"{base}/token {form.get('grant_type')}: {status} {doc}")
    return doc


# --------------------------------------------------------------------------
# mandate's browser flow, driven over HTTP, for refresh tokens.


class Forms(html.parser.HTMLParser):
    """The forms of a page: action, hidden inputs and ticked checkboxes."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": []})
        elif tag == "input" and self.forms and a.get("name"):
            kind = a.get("type", "text")
            if kind == "hidden" or (kind == "checkbox" and "checked" in a):
                self.forms[-1]["fields"].append((a["name"], a.get("value", "")))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class MandateBrowser:
    """One signed-in browser; consent is remembered after the first time."""

    def __init__(self, base):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )

    def _fetch(self, url, form=None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(url, data=data, timeout=10) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode(errors="replace")

    def code(self, client_id, challenge, state):
        url = self.base + "/authorize?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
            "scope": "invoices:read", "resource": API, "state": state,
            "code_challenge": challenge, "code_challenge_method": "S256",
        })
        form = None
        for _ in range(12):
            status, headers, body = self._fetch(url, form)
            form = None
            if status in (301, 302, 303, 307):
                url = urllib.parse.urljoin(url, headers["Location"])
                if url.startswith(REDIRECT):
                    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
                    if "code" not in q:
                        raise BenchError(f"mandate /authorize refused: {q}")
                    return q["code"][0]
                continue
            if status != 200:
                raise BenchError(f"mandate browser flow: {status} at {url}: {body[:300]}")
            p = Forms()
            p.feed(body)
            if not p.forms:
                raise BenchError(f"mandate browser flow: no form at {url}")
            f = p.forms[0]
            fields = list(f["fields"])
            if f["action"] == "/login":
                fields += [("username", USER), ("password", PASSWORD)]
            elif f["action"] == "/consent":
                fields += [("decision", "allow")]
            else:
                raise BenchError(f"mandate browser flow: unexpected form {f['action']}")
            url = urllib.parse.urljoin(url, f["action"])
            form = fields
        raise BenchError("mandate browser flow: too many steps")


# --------------------------------------------------------------------------
# Servers.


def read_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024.0  # MiB
    return out


class Server:
    name = ""
    ready_path = ""

    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.proc = None
        self.port = None

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def command(self):
        raise NotImplementedError

    def env(self):
        raise NotImplementedError

    def start(self):
        """Starts the server pinned to core 0; returns ms from spawn to first 200."""
        return self.start_on("0")

    def start_on(self, cores):
        if self.port is None:
            self.port = free_port()  # kept across restarts (mandate's issuer)
        cmd = self.command()
        if self.args.pin:
            cmd = ["taskset", "-c", cores] + cmd
        logf = open(os.path.join(self.workdir, f"{self.slug}.log"), "ab")
        t0 = time.perf_counter()
        self.proc = spawn(cmd, env=self.env(), stdout=logf, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.cwd())
        logf.close()
        deadline = t0 + 60
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} before it was ready; "
                                 f"log: {self.log_tail()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", self.ready_path)
                st = c.getresponse().status
                c.close()
                if st == 200:
                    return (time.perf_counter() - t0) * 1000.0
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise BenchError(f"{self.name} not ready after 60 s; log: {self.log_tail()}")
            time.sleep(0.005)

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def memory(self):
        return read_status(self.proc.pid)

    def cwd(self):
        return None

    def log_tail(self):
        try:
            with open(os.path.join(self.workdir, f"{self.slug}.log"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return "(no log)"


class Mandate(Server):
    name = "mandate"
    slug = "mandate"
    ready_path = "/readyz"

    def __init__(self, args, workdir, database_url, issuer=None):
        super().__init__(args, workdir)
        self.database_url = database_url
        self.config = os.path.join(workdir, "mandate.toml")
        if not os.path.exists(self.config):
            with open(self.config, "w") as f:
                f.write(MANDATE_TOML)
        self.keys_dir = os.path.join(workdir, "keys")
        self.port = free_port()
        self.issuer = issuer  # instances of one deployment share one issuer

    def command(self):
        return [self.args.mandate, "serve"]

    def env(self):
        env = dict(os.environ)
        env.update({
            "MANDATE_CONFIG": self.config,
            "MANDATE_DATABASE_URL": self.database_url,
            "MANDATE_KEYS_DIR": self.keys_dir,
            "MANDATE_BIND": f"127.0.0.1:{self.port}",
            "MANDATE_ISSUER": self.issuer or f"http://127.0.0.1:{self.port}",
            "MANDATE_LOG": "warn",
        })
        return env

    def cli(self, *argv, stdin=None):
        r = subprocess.run([self.args.mandate, *argv], env=self.env(), input=stdin,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise BenchError(f"mandate {' '.join(argv[:2])}: exit {r.returncode}: {r.stderr.strip()}")
        return json.loads(r.stdout) if "--json" in argv else r.stdout

    def provision(self):
        """The clients and the user, made with the operator CLI before serving."""
        self.cli("migrate")
        self.cc = self.cli("client", "create", "--name", "bench", "--resource", API,
                           "--scope", "invoices:read", "--json")
        # Owns the audience of the first client's tokens: introspects them and
        # exchanges them for https://files.example.com.
        self.rs = self.cli("client", "create", "--name", "bench-rs", "--grant", "token-exchange",
                           "--owns-resource", API, "--exchange-to", FILES,
                           "--resource", FILES, "--scope", "files:read", "--json")
        # The root of the token-exchange chain: a client-credentials client whose
        # registered scopes include files:read (SPEC §5 rule 4: the exchanged
        # token's scopes are within the root client's registered scopes).
        self.agent = self.cli("client", "create", "--name", "bench-agent", "--resource", API,
                              "--resource", FILES, "--scope", "invoices:read", "--scope",
                              "files:read", "--json")
        self.web = self.cli("client", "create", "--name", "bench-web", "--client-type", "web",
                            "--grant", "authorization_code", "--grant", "refresh_token",
                            "--redirect-uri", REDIRECT, "--resource", API,
                            "--scope", "invoices:read", "--json")
        self.cli("user", "create", "--username", USER, "--password-stdin", "--json",
                 stdin=PASSWORD + "\n")
        self.cc_auth = basic(self.cc["client_id"], self.cc["client_secret"])
        self.rs_auth = basic(self.rs["client_id"], self.rs["client_secret"])
        self.agent_auth = basic(self.agent["client_id"], self.agent["client_secret"])
        self.web_auth = basic(self.web["client_id"], self.web["client_secret"])
        self.browser = None

    def after_start(self):
        self.browser = MandateBrowser(self.base)  # a fresh session per process

    # -- workloads: (path, body, auth) for post.lua, or None when n/a --

    def cc_body(self):
        return {"grant_type": "client_credentials", "resource": API, "scope": "invoices:read"}

    def cc_token(self):
        return token(self.base, self.cc_body(), self.cc_auth)["access_token"]

    def probe(self, workload):
        """None when the workload runs here, else why not (shown as n/a)."""
        if workload == "introspection":
            status, doc = post_json(self.base, "/introspect", {"token": self.cc_token()}, self.rs_auth)
            if status in (404, 405):
                return "not implemented"
            if status != 200 or doc.get("active") is not True:
                return f"error: {status} {doc.get('error', doc)}"
        elif workload == "token exchange":
            status, doc = post_json(self.base, "/token", self.exchange_body(), self.rs_auth)
            if doc.get("error") == "unsupported_grant_type":
                return "not implemented"
            if status != 200 or "access_token" not in doc:
                return f"error: {status} {doc.get('error')}: {doc.get('error_description', '')}"
        elif workload == "refresh":
            try:
                self.refresh_tokens(1)
            except BenchError as e:
                return f"error: {e}"
        return None

    def exchange_body(self):
        subject = token(self.base, self.cc_body(), self.agent_auth)["access_token"]
        return {"grant_type": TOKEN_EXCHANGE, "subject_token": subject,
                "subject_token_type": ACCESS_TOKEN_TYPE, "resource": FILES}

    def post_cell(self, workload):
        if workload == "client credentials":
            return "/token", self.cc_body(), self.cc_auth
        if workload == "introspection":
            return "/introspect", {"token": self.cc_token()}, self.rs_auth
        if workload == "token exchange":
            return "/token", self.exchange_body(), self.rs_auth
        raise KeyError(workload)

    def refresh_tokens(self, n):
        out = []
        for i in range(n):
            verifier = b64url(secrets.token_bytes(32))
            challenge = b64url(hashlib.sha256(verifier.encode()).digest())
            code = self.browser.code(self.web["client_id"], challenge, f"s{i}")
            doc = token(self.base, {"grant_type": "authorization_code", "code": code,
                                    "redirect_uri": REDIRECT, "code_verifier": verifier},
                        self.web_auth)
            if "refresh_token" not in doc:
                raise BenchError(f"mandate code exchange gave no refresh token: {sorted(doc)}")
            out.append(doc["refresh_token"])
        return out

    def refresh_auth(self):
        return self.web_auth


class NodeOidcProvider(Server):
    name = "node-oidc-provider"
    slug = "oidc-provider"
    ready_path = "/.well-known/openid-configuration"

    def __init__(self, args, workdir):
        super().__init__(args, workdir)
        self.secret = b64url(secrets.token_bytes(32))
        self.rs_secret = b64url(secrets.token_bytes(32))
        self.cc_auth = basic("bench", self.secret)
        self.rs_auth = basic("bench-rs", self.rs_secret)

    def command(self):
        return [self.args.node, os.path.join(OP_DIR, "server.mjs")]

    def cwd(self):
        return OP_DIR

    def env(self):
        env = dict(os.environ)
        env.update({"PORT": str(self.port), "NODE_ENV": "production",
                    "BENCH_CLIENT_SECRET": self.secret, "BENCH_RS_SECRET": self.rs_secret})
        env.pop("BENCH_DEBUG", None)
        return env

    def after_start(self):
        pass

    def cc_body(self, resource=API):
        return {"grant_type": "client_credentials", "resource": resource, "scope": "invoices:read"}

    def probe(self, workload):
        if workload == "token exchange":
            return "no token exchange"  # the table compares with its client credentials
        if workload == "introspection":
            path, form, auth = self.post_cell(workload)
            status, doc = post_json(self.base, path, form, auth)
            if status != 200 or doc.get("active") is not True:
                return f"error: {status} {doc}"
        if workload == "refresh":
            rt = self.refresh_tokens(1)[0]
            doc = token(self.base, {"grant_type": "refresh_token", "refresh_token": rt}, self.cc_auth)
            if "refresh_token" not in doc:
                return "error: no rotated refresh token"
        return None

    def post_cell(self, workload):
        if workload == "client credentials":
            return "/token", self.cc_body(), self.cc_auth
        if workload == "introspection":
            opaque = token(self.base, self.cc_body(OPAQUE), self.cc_auth)["access_token"]
            return "/token/introspection", {"token": opaque}, self.rs_auth
        raise KeyError(workload)

    def refresh_tokens(self, n):
        status, doc = post_json(self.base, f"/bench/refresh-tokens?n={n}", {})
        if status != 200:
            raise BenchError(f"node-oidc-provider /bench/refresh-tokens: {status} {doc}")
        return doc["refresh_tokens"]

    def refresh_auth(self):
        return self.cc_auth

    def versions(self):
        status, data = http_request(self.base, "GET", "/bench/version")
        return json.loads(data)


# --------------------------------------------------------------------------
# wrk.


def run_wrk(args, workdir, url, script, env_extra, conns, seconds, threads=WRK_THREADS):
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency",
           "--timeout", "10s", "-s", os.path.join(WRK_DIR, script), url]
    if args.pin:
        cmd = ["taskset", "-c", "1"] + cmd
    env = dict(os.environ, BENCH_WRK_DIR=WRK_DIR, BENCH_THREADS=str(threads), **env_extra)
    proc = spawn(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                 stdin=subprocess.DEVNULL, text=True)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        raise BenchError(f"wrk did not finish: {' '.join(cmd)}")
    if proc.returncode != 0:
        raise BenchError(f"wrk exited {proc.returncode}: {out[-1000:]}")
    return parse_wrk(out)


def parse_wrk(out):
    """Figures from the BENCH_JSON line of the scripts' done(), or from wrk's text."""
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            d = json.loads(line[len("BENCH_JSON "):])
            errors = (d["status_errors"] + d["connect_errors"] + d["read_errors"]
                      + d["write_errors"] + d["timeouts"])
            return {"rps": d["requests"] / (d["duration_us"] / 1e6),
                    "p50": d["p50_us"] / 1000.0, "p99": d["p99_us"] / 1000.0,
                    "requests": d["requests"], "errors": errors, "starved": d["starved"]}
    # Fallback: wrk's own text (Requests/sec, 50%, 99%).
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    res = {"errors": 0, "starved": 0, "requests": 0}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            res["rps"] = float(parts[1])
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            num = parts[1].rstrip("umsµ")
            suffix = parts[1][len(num):]
            res["p" + parts[0][:2]] = float(num) * unit.get(suffix, 1.0)
        elif "Non-2xx or 3xx responses:" in line:
            res["errors"] += int(parts[-1])
    if not {"rps", "p50", "p99"} <= res.keys():
        raise BenchError(f"cannot read wrk's output:\n{out[-1500:]}")
    return res


def measure(args, workdir, server, workload, conns):
    """One wrk run of `workload` at `conns` connections; fresh inputs every run."""
    if workload == "refresh":
        path = os.path.join(workdir, f"{server.slug}-refresh-tokens.txt")
        with open(path, "w") as f:
            f.write("\n".join(server.refresh_tokens(conns)) + "\n")
        env = {"BENCH_TOKENS_FILE": path, "BENCH_AUTH": server.refresh_auth()}
        script, url = "refresh.lua", server.base + "/token"
    else:
        p, form, auth = server.post_cell(workload)
        path = os.path.join(workdir, f"{server.slug}-body.txt")
        with open(path, "w") as f:
            f.write(urllib.parse.urlencode(form))
        env = {"BENCH_BODY_FILE": path, "BENCH_AUTH": auth}
        script, url = "post.lua", server.base + p
    time.sleep(args.settle)
    return run_wrk(args, workdir, url, script, env, conns, args.duration)


# --------------------------------------------------------------------------
# One database: both servers, every cell.

WORKLOADS = ("client credentials", "introspection", "token exchange", "refresh")


def bench_database(args, db_label, database_url, workdir):
    for sub in ("mandate", "oidc-provider"):
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    mandate = Mandate(args, os.path.join(workdir, "mandate"), database_url)
    node = NodeOidcProvider(args, os.path.join(workdir, "oidc-provider"))
    servers = (mandate, node)
    result = {"database": db_label, "loadavg_start": loadavg(), "start_ms": {}, "rss": {},
              "cells": {}, "na": {}}

    log(f"{db_label}: provisioning mandate (operator CLI)")
    mandate.provision()

    for s in servers:
        ms = s.start()
        CLEANUP.add(s.stop, f"{s.name} server")
        s.after_start()
        result["start_ms"][s.name] = [ms]
        log(f"{db_label}: {s.name} ready in {ms:.0f} ms on port {s.port}")
    time.sleep(1.0)
    for s in servers:
        result["rss"][s.name] = {"idle": s.memory()["VmRSS"]}
    result["versions"] = node.versions()

    for s in servers:
        for w in WORKLOADS:
            why = s.probe(w)
            if why:
                result["na"].setdefault(s.name, {})[w] = why
    log(f"{db_label}: not run: {result['na']}")

    # Warm-up, unrecorded: V8's JIT and both servers' caches and pools.
    for s in servers:
        p, form, auth = s.post_cell("client credentials")
        run_warm(args, workdir, s, p, form, auth)

    for w in WORKLOADS:
        for conns in CONNECTIONS:
            for r in range(args.rounds):
                for s in servers:
                    if w in result["na"].get(s.name, {}):
                        continue
                    res = measure(args, workdir, s, w, conns)
                    result["cells"].setdefault(f"{s.name}|{w}|{conns}", []).append(res)
                    log(f"{db_label}: round {r + 1}/{args.rounds} {s.name:18} {w:18} c={conns:<3} "
                        f"{res['rps']:9.0f} req/s  p50 {res['p50']:7.2f} ms  p99 {res['p99']:7.2f} ms"
                        + (f"  ERRORS {res['errors']}" if res["errors"] else ""))

    for s in servers:
        result["rss"][s.name]["peak"] = s.memory()["VmHWM"]
        s.stop()
    if db_label == "PostgreSQL":
        node.stop()
        result["scale"] = bench_scale(args, mandate, workdir)
    # More samples of start to ready, alternating, on the same data.
    for r in range(args.rounds - 1):
        for s in servers:
            ms = s.start()
            s.stop()
            result["start_ms"][s.name].append(ms)
    result["loadavg_end"] = loadavg()
    return result


# --------------------------------------------------------------------------
# Scale-out: several mandate instances on one PostgreSQL database.

SCALE_INSTANCES = (1, 2, 3)


def scrape(base):
    """The counters bench_scale reads from one instance's /metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {"issued": 0.0, "batch_sum": 0.0, "batch_count": 0.0, "commit_sum": 0.0}
    for line in text.splitlines():
        if line.startswith("mandate_tokens_total{") and 'grant_type="client_credentials"' in line \
                and 'outcome="issued"' in line:
            out["issued"] += float(line.split()[-1])
        elif line.startswith("mandate_audit_batch_size_sum"):
            out["batch_sum"] = float(line.split()[-1])
        elif line.startswith("mandate_audit_batch_size_count"):
            out["batch_count"] = float(line.split()[-1])
        elif line.startswith("mandate_audit_commit_seconds_sum"):
            out["commit_sum"] = float(line.split()[-1])
    return out


def bench_scale(args, first, workdir):
    """Client credentials through 1, 2 and 3 instances sharing `first`'s
    database, keys directory and issuer, every instance pinned to core 0 (the
    one core a single instance had), wrk on core 1, PostgreSQL unpinned. Each
    instance's own count comes from its /metrics."""
    results = []
    p, form, auth = first.post_cell("client credentials")
    body = os.path.join(workdir, "scale-body.txt")
    with open(body, "w") as f:
        f.write(urllib.parse.urlencode(form))
    for n in SCALE_INSTANCES:
        instances = []
        for i in range(n):
            m = Mandate(args, workdir, first.database_url, issuer=first.base)
            m.config, m.keys_dir, m.slug = first.config, first.keys_dir, f"mandate-scale-{n}-{i}"
            m.start_on("0")
            CLEANUP.add(m.stop, f"mandate instance {i + 1}/{n}")
            instances.append(m)
        threads = 2 * n
        conns = 64 - 64 % threads
        env = {"BENCH_BODY_FILE": body, "BENCH_AUTH": auth,
               "BENCH_ADDRS": ",".join(f"127.0.0.1:{m.port}" for m in instances)}
        run_wrk(args, workdir, instances[0].base + p, "scale.lua", env, conns, args.warmup, threads)
        runs = []
        for r in range(args.rounds):
            before = [scrape(m.base) for m in instances]
            time.sleep(args.settle)
            res = run_wrk(args, workdir, instances[0].base + p, "scale.lua", env, conns, args.duration,
                          threads)
            after = [scrape(m.base) for m in instances]
            res["per_instance"] = [(a["issued"] - b["issued"]) / args.duration for a, b in zip(after, before)]
            batches = sum(a["batch_count"] - b["batch_count"] for a, b in zip(after, before))
            res["batch"] = (sum(a["batch_sum"] - b["batch_sum"] for a, b in zip(after, before)) / batches
                            if batches else None)
            res["commit_ms"] = (sum(a["commit_sum"] - b["commit_sum"] for a, b in zip(after, before))
                                * 1000.0 / batches if batches else None)
            runs.append(res)
            log(f"scale-out: {n} instance(s), round {r + 1}/{args.rounds}: {res['rps']:9.0f} req/s "
                f"(per instance {', '.join(f'{x:.0f}' for x in res['per_instance'])})  "
                f"p99 {res['p99']:7.2f} ms" + (f"  ERRORS {res['errors']}" if res["errors"] else ""))
        for m in instances:
            m.stop()
        results.append({"instances": n, "connections": conns, "runs": runs})
    return results


def render_scale(scale):
    out = ["", "### Scale-out: instances on one PostgreSQL database (client credentials)", ""]
    out.append("| instances | connections | req/s, all | req/s, each instance | p50 | p99 | "
               "audit events per commit | commit time |")
    out.append("|---:|---:|---:|---|---:|---:|---:|---:|")
    for row in scale:
        runs = row["runs"]
        each = [median([r["per_instance"][i] for r in runs]) for i in range(row["instances"])]
        errs = sum(r["errors"] for r in runs)
        batch = median([r["batch"] for r in runs if r["batch"] is not None])
        commit = median([r["commit_ms"] for r in runs if r["commit_ms"] is not None])
        total = fmt_num(median([r["rps"] for r in runs]), "rps") + (f" ⚠ {errs} errors" if errs else "")
        cells = [str(row["instances"]), str(row["connections"]), total,
                 " · ".join(fmt_num(x, "rps") for x in each),
                 fmt_num(median([r["p50"] for r in runs]), "ms"),
                 fmt_num(median([r["p99"] for r in runs]), "ms"),
                 "—" if batch is None else f"{batch:.1f}",
                 "—" if commit is None else f"{commit:.2f} ms"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("Every instance shares one database, one keys directory and one issuer; wrk thread i "
               "drives instance i mod N. All instances are pinned to the one core a single instance "
               "had (core 0), wrk to core 1, PostgreSQL to neither: on two cores the instances divide "
               "one core between them, so the aggregate measures what coordination through the "
               "database costs, not what more machines add. Each instance's rate is its own "
               "`mandate_tokens_total` from its `/metrics`.")
    return out


def run_warm(args, workdir, s, p, form, auth):
    path = os.path.join(workdir, f"{s.slug}-warm.txt")
    with open(path, "w") as f:
        f.write(urllib.parse.urlencode(form))
    run_wrk(args, workdir, s.base + p, "post.lua", {"BENCH_BODY_FILE": path, "BENCH_AUTH": auth},
            16, args.warmup)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --------------------------------------------------------------------------
# PostgreSQL.


def postgres_available():
    if shutil.which("psql") is None:
        return "psql is not installed"
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            pass
    except OSError:
        return "nothing answers on 127.0.0.1:5432"
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-Atc", "select 1"],
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        return f"psql -U postgres failed: {r.stderr.strip()}"
    return None


def psql(sql):
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres",
                        "-v", "ON_ERROR_STOP=1", "-qc", sql], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise BenchError(f"psql: {r.stderr.strip()}")


# --------------------------------------------------------------------------
# The table.


def median(xs):
    return statistics.median(xs) if xs else None


def fmt_num(v, kind):
    if v is None:
        return "—"
    if kind == "rps":
        return f"{v:,.0f}"
    if kind == "ms":
        return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"
    if kind == "mib":
        return f"{v:.1f} MiB"
    return str(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def render(meta, results, skipped):
    out = []
    out.append("## Benchmark: mandate and node-oidc-provider, same machine, same run")
    out.append("")
    out.append(f"{meta['date']} · `nproc` {meta['nproc']} · {meta['cpu']} · mandate {meta['mandate']} · "
               f"node {meta['node']} · oidc-provider {meta['oidc_provider']} · {meta['wrk']}")
    out.append("")
    out.append(f"Each server pinned to core 0, wrk (`-t{WRK_THREADS}`) to core 1"
               + ("" if meta["pinned"] else " — **not pinned: fewer than 2 cores**")
               + f"; {meta['duration']} s per run, {meta['rounds']} round(s) alternating mandate, "
               f"node-oidc-provider; medians. Ratio = mandate / node-oidc-provider "
               f"(req/s: higher is better for mandate; latency, memory, start: lower is better)."
               + (" **Quick run (`--quick`): one short round, indicative only.**" if meta["quick"] else ""))
    for res in results:
        out.append("")
        out.append(f"### {res['database']}")
        out.append("")
        out.append(f"Load average at start {res['loadavg_start']}, at end {res['loadavg_end']}.")
        out.append("")
        out.append("| metric | mandate | node-oidc-provider | ratio |")
        out.append("|---|---:|---:|---:|")
        na = res["na"]
        failed = False
        for w in WORKLOADS:
            for conns in CONNECTIONS:
                m_runs = res["cells"].get(f"mandate|{w}|{conns}", [])
                node_w = "client credentials" if w == "token exchange" else w
                n_runs = res["cells"].get(f"node-oidc-provider|{node_w}|{conns}", [])
                label = {"client credentials": "client credentials",
                         "introspection": "introspection¹",
                         "token exchange": "token exchange²",
                         "refresh": "refresh (rotating)³"}[w]
                if not m_runs or not n_runs:
                    ms = f"n/a ({na.get('mandate', {}).get(w, 'not run')})" if not m_runs else \
                        " · ".join(fmt_num(median([x[k] for x in m_runs]), kd) for k, kd in
                                   (("rps", "rps"), ("p50", "ms"), ("p99", "ms")))
                    ns = f"n/a ({na.get('node-oidc-provider', {}).get(node_w, 'not run')})" \
                        if not n_runs else " · ".join(
                            fmt_num(median([x[k] for x in n_runs]), kd) for k, kd in
                            (("rps", "rps"), ("p50", "ms"), ("p99", "ms")))
                    for runs, cell in ((m_runs, "m"), (n_runs, "n")):
                        errs = sum(x["errors"] for x in runs)
                        if errs:
                            failed = True
                            if cell == "m":
                                ms += f" ⚠ {errs} errors"
                            else:
                                ns += f" ⚠ {errs} errors"
                    out.append(f"| {label}, {conns} conn: req/s · p50 · p99 | {ms} | {ns} | — |")
                    continue
                for key, kind, what in (("rps", "rps", "req/s"), ("p50", "ms", "p50"), ("p99", "ms", "p99")):
                    mv = median([x[key] for x in m_runs])
                    nv = median([x[key] for x in n_runs])
                    ms, ns = fmt_num(mv, kind), fmt_num(nv, kind)
                    if key == "rps":
                        me, ne = sum(x["errors"] for x in m_runs), sum(x["errors"] for x in n_runs)
                        if me:
                            ms += f" ⚠ {me} errors"
                            failed = True
                        if ne:
                            ns += f" ⚠ {ne} errors"
                            failed = True
                    out.append(f"| {label}, {conns} conn: {what} | {ms} | {ns} | {ratio(mv, nv)} |")
        for k, label in (("idle", "RSS idle"), ("peak", "RSS peak (VmHWM)")):
            mv = res["rss"]["mandate"].get(k)
            nv = res["rss"]["node-oidc-provider"].get(k)
            out.append(f"| {label} | {fmt_num(mv, 'mib')} | {fmt_num(nv, 'mib')} | {ratio(mv, nv)} |")
        mv, nv = median(res["start_ms"]["mandate"]), median(res["start_ms"]["node-oidc-provider"])
        out.append(f"| start to first ready response⁴ | {fmt_num(mv, 'ms')} | {fmt_num(nv, 'ms')} | "
                   f"{ratio(mv, nv)} |")
        out.append("")
        out.append(f"mandate stores in {res['database']} ("
                   + ("a fresh file, WAL, full fsync" if res["database"] == "SQLite" else
                      "a fresh database on 127.0.0.1:5432; the PostgreSQL server's own memory is not "
                      "in mandate's RSS") +
                   ") and writes an audit event durably before each answer; node-oidc-provider keeps "
                   "everything in memory⁵ and has no audit trail.")
        if res.get("scale"):
            out.extend(render_scale(res["scale"]))
        if failed:
            out.append("")
            out.append("⚠ Some requests failed (non-2xx, socket errors or timeouts) in the marked "
                       "cells: see the run's log before trusting them.")
    for label, why in skipped:
        out.append("")
        out.append(f"### {label}")
        out.append("")
        out.append(f"Skipped: {why}.")
    out.append("")
    out.append("¹ node-oidc-provider cannot introspect JWT access tokens: its column introspects an "
               "opaque access token (a second resource with `accessTokenFormat: 'opaque'`), a lookup "
               "in its memory store; mandate introspects its own ES256 JWT (signature and expiry, then "
               "the revocation of the token, its ancestors and its grant in the database).")
    out.append("")
    out.append("² node-oidc-provider has no token exchange (RFC 8693): its column repeats its client "
               "credentials figures at the same connections; mandate's row exchanges a client "
               "credentials token for `https://api.example.com` into one for `https://files.example.com`.")
    out.append("")
    out.append("³ Refresh tokens rotate on every use on both servers (a reused one revokes the grant), "
               "so every request presents the token the previous answer returned: each wrk thread keeps "
               "its unused tokens, seeded with one fresh token per connection before every run "
               "(mandate: one authorization code flow each over HTTP — login, consent, PKCE S256 code; "
               "node-oidc-provider: minted in-process through its API on an admin route of the bench "
               "server, `rotateRefreshToken: true`). No ID tokens on either side.")
    out.append("")
    out.append("⁴ From spawn to the first 200 of the readiness URL (mandate `/readyz`, "
               "node-oidc-provider `/.well-known/openid-configuration`), polled every 5 ms; the "
               "first start of mandate creates its signing key, later ones load it.")
    out.append("")
    out.append("⁵ The library's own in-memory adapter (it ships no database adapter), given a store "
               "large enough for a whole run: its default store keeps at most 1,000 entries and, under "
               "64 concurrent rotating refreshes, drops live refresh tokens (`refresh token not found`). "
               "Its peak RSS therefore holds every token and grant stored during the run, which "
               "mandate keeps in its database.")
    return "\n".join(out) + "\n"



def machine_meta(args):
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--",
                            "src", "migrations", "templates", "Cargo.toml", "Cargo.lock"],
                           capture_output=True, text=True).stdout.strip()
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrk_version = (wrk.stdout + wrk.stderr).split("[")[0].strip() or "wrk"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mandate": f"`{rev}{' + uncommitted changes' if dirty else ''}`",
        "wrk": wrk_version,
        "duration": args.duration,
        "rounds": args.rounds,
        "quick": args.quick,
        "pinned": args.pin,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one 3 s round per cell (default: three 10 s rounds)")
    ap.add_argument("--mandate", required=True, help="the mandate binary (release build)")
    ap.add_argument("--node", required=True, help="the node binary that runs node-oidc-provider")
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    args.duration = 3 if args.quick else 10
    args.rounds = 1 if args.quick else 3
    args.warmup = 1 if args.quick else 3
    args.settle = 0.3 if args.quick else 1.0
    args.pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)

    meta = machine_meta(args)
    results, skipped = [], []
    tmp = tempfile.mkdtemp(prefix="mandate-bench-")
    CLEANUP.add(lambda: shutil.rmtree(tmp, ignore_errors=True), tmp)
    try:
        log(f"work directory {tmp}")
        work = os.path.join(tmp, "sqlite")
        os.makedirs(work)
        results.append(bench_database(args, "SQLite", f"sqlite://{work}/mandate.db", work))
        why = "--no-postgres" if args.no_postgres else postgres_available()
        if why:
            log(f"PostgreSQL skipped: {why}")
            skipped.append(("PostgreSQL", why))
        else:
            name = f"mandate_bench_{secrets.token_hex(6)}"
            psql(f'CREATE DATABASE "{name}"')
            CLEANUP.add(lambda: psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'), f"database {name}")
            work = os.path.join(tmp, "postgres")
            os.makedirs(work)
            results.append(bench_database(args, "PostgreSQL", f"postgres://postgres@127.0.0.1:5432/{name}", work))
        v = results[0]["versions"]
        meta["node"] = v["node"]
        meta["oidc_provider"] = v["oidc-provider"]
        table = render(meta, results, skipped)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "latest.md"), "w") as f:
            f.write(table)
        with open(os.path.join(args.out, "latest.json"), "w") as f:
            json.dump({"meta": meta, "results": results, "skipped": skipped}, f, indent=1)
        print(table)
        log(f"written to {os.path.relpath(os.path.join(args.out, 'latest.md'), ROOT)}")
        return 0
    except BenchError as e:
        log(f"failed: {e}")
        return 1
    finally:
        CLEANUP.run()


if __name__ == "__main__":
    sys.exit(main())
