"""Shared harness of the Python conformance suites.

- `Suite`: an ordered list of named checks; prints `ok - name` / `FAIL - name:
  reason` per check and `N passed, M failed` at the end; exit status 1 when any
  check failed. A check that needs the result of an earlier, failed one fails
  with "prerequisite missing" instead of being skipped, so nothing passes by
  accident.
- `Server`: one `mandate serve` on a free port with its own temporary SQLite
  database (or a fresh PostgreSQL database `mandate_test_<random>` when the
  suite runs with `--pg`; left for .ci/test to drop), its own keys
  directory and `mandate.toml`, plus the operator CLI against the same
  configuration.
- `FormPage` / `UserAgent`: a plain-HTTP "browser" (requests session, cookies,
  no redirects followed automatically) that parses mandate's HTML forms with
  `html.parser` and drives login and consent the way a person would: it
  submits every hidden input (CSRF token, request handle, ...), the ticked
  checkboxes and the clicked button's name/value.
- `verify_access_token`: RFC 9068 checks with joserfc against the served JWKS.

Run a suite through conformance/run.sh, which provides the pinned dependencies.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECS = 60.0
HTTP_TIMEOUT_SECS = 10.0

# The resources of SPEC §1 (names and descriptions as a user sees them on the
# consent page). invoices:write needs MFA and payments:send an approval: the
# flows here never request them.
BASE_CONFIG = """\
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
"""

INVOICES = "https://api.example.com"
FILES = "https://files.example.com"
ACR_PWD = "urn:mandate:acr:pwd"


# --------------------------------------------------------------------------
# Checks


class CheckFailed(Exception):
    pass


def expect(cond: object, reason: str) -> None:
    if not cond:
        raise CheckFailed(reason)


def expect_eq(actual: Any, expected: Any, what: str) -> None:
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def need(ctx: dict[str, Any], *keys: str) -> None:
    for k in keys:
        if k not in ctx:
            raise CheckFailed(f"prerequisite missing: {k} (an earlier check failed)")


def short(text: str, limit: int = 400) -> str:
    """`text` on one line, cut to `limit` characters, for failure messages."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


Check = Callable[[dict[str, Any]], None]


class Suite:
    """Named checks run in order against one shared context dict."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.checks: list[tuple[str, Check]] = []

    def check(self, name: str) -> Callable[[Check], Check]:
        def register(fn: Check) -> Check:
            self.checks.append((name, fn))
            return fn

        return register

    def run(self, ctx: dict[str, Any], cleanup: Callable[[bool], None]) -> int:
        """Runs every check, then `cleanup(failed)`; returns the exit status."""
        passed = failed = 0

        # A SIGTERM/SIGINT to this script still stops the servers and cleans up.
        def on_signal(signum: int, _frame: Any) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            for name, fn in self.checks:
                try:
                    fn(ctx)
                except CheckFailed as e:
                    failed += 1
                    print(f"FAIL - {name}: {e}", flush=True)
                except Exception as e:  # an unexpected exception is a failure too
                    failed += 1
                    print(f"FAIL - {name}: {e.__class__.__name__}: {e}", flush=True)
                    traceback.print_exc(file=sys.stderr)
                else:
                    passed += 1
                    print(f"ok - {name}", flush=True)
        finally:
            cleanup(failed > 0)
        print(f"{passed} passed, {failed} failed", flush=True)
        return 1 if failed else 0


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--pg",
        action="store_true",
        help="store in a fresh PostgreSQL database under $MANDATE_TEST_PG instead of SQLite",
    )
    return p.parse_args()


def server_binary() -> Path:
    return Path(os.environ.get("MANDATE_BIN") or REPO / "target" / "debug" / "mandate")


# --------------------------------------------------------------------------
# The server under test


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgDatabase:
    """A fresh database `mandate_test_<random>` on the server of $MANDATE_TEST_PG
    (e.g. postgres://postgres@127.0.0.1:5432), created with psql.

    It is not dropped at the end: DROP DATABASE waits for a checkpoint, which
    on a busy machine (the Rust suites run beside this one) took over a
    minute. Like the Rust tests' databases it is left to .ci/test, which drops
    every `mandate_test_*` database at its start."""

    def __init__(self) -> None:
        base = os.environ.get("MANDATE_TEST_PG", "")
        if not base:
            raise CheckFailed("--pg needs MANDATE_TEST_PG (e.g. postgres://postgres@127.0.0.1:5432)")
        if shutil.which("psql") is None:
            raise CheckFailed("--pg needs psql (Debian package postgresql-client)")
        self.base = base.rstrip("/")
        self.name = f"mandate_test_{uuid.uuid4().hex}"
        self._psql(f'CREATE DATABASE "{self.name}"')
        self.url = f"{self.base}/{self.name}"

    def _psql(self, sql: str) -> None:
        r = subprocess.run(
            ["psql", f"{self.base}/postgres", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode != 0:
            raise CheckFailed(f"psql {sql!r}: exit {r.returncode}: {r.stderr.strip()}")


class Server:
    """One `mandate serve` in its own temporary directory.

    `config` is the mandate.toml text; `env` adds environment variables (e.g.
    SSL_CERT_FILE); `pg` selects a fresh PostgreSQL database instead of SQLite.
    """

    def __init__(self, config: str, *, env: dict[str, str] | None = None, pg: bool = False,
                 port: int | None = None, label: str = "mandate") -> None:
        self.binary = server_binary()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"mandate-conformance-{label}-"))
        self.config_path = self.workdir / "mandate.toml"
        self.config_path.write_text(config)
        self.log_path = self.workdir / "server.log"
        self.extra_env = dict(env or {})
        self.use_pg = pg
        self.pg: PgDatabase | None = None
        self.fixed_port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.issuer = ""
        self.env: dict[str, str] = {}

    def _database_url(self) -> str:
        if self.use_pg:
            if self.pg is None:
                self.pg = PgDatabase()
            return self.pg.url
        return f"sqlite://{self.workdir}/m.db"

    def _env_for(self, port: int) -> dict[str, str]:
        # Inherit the environment but none of the caller's MANDATE_* settings
        # (MANDATE_TEST_PG included), so the run is hermetic.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MANDATE_")}
        env.update(
            MANDATE_CONFIG=str(self.config_path),
            MANDATE_BIND=f"127.0.0.1:{port}",
            MANDATE_ISSUER=f"http://127.0.0.1:{port}",
            MANDATE_DATABASE_URL=self._database_url(),
            MANDATE_KEYS_DIR=str(self.workdir / "keys"),
            NO_COLOR="1",  # plain server logs in server.log
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            raise CheckFailed(f"server binary {self.binary} is not an executable file (run `cargo build`)")
        last_error = "not started"
        # Picking a free port then binding it later can race with another
        # process; retry with a new port when the server exits early.
        for _ in range(1 if self.fixed_port else 3):
            self.port = self.fixed_port or free_port()
            self.issuer = f"http://127.0.0.1:{self.port}"
            self.env = self._env_for(self.port)
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(self.binary), "serve", "--config", str(self.config_path)],
                    env=self.env,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            deadline = time.monotonic() + READY_TIMEOUT_SECS
            while time.monotonic() < deadline:
                rc = self.proc.poll()
                if rc is not None:
                    last_error = (f"server exited with status {rc} before /readyz was 200: "
                                  f"{short(self.logs()[-600:])}")
                    self.proc = None
                    break
                try:
                    r = requests.get(f"{self.issuer}/readyz", timeout=2)
                    if r.status_code == 200:
                        return
                    last_error = f"/readyz answered {r.status_code}"
                except requests.RequestException as e:
                    last_error = f"/readyz: {e.__class__.__name__}"
                time.sleep(0.05)
            else:
                self.stop()
                raise CheckFailed(f"not ready after {READY_TIMEOUT_SECS}s: {last_error}")
        raise CheckFailed(last_error)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        with open(self.log_path, "ab") as log:
            log.write(f"--- mandate {' '.join(args)}\n".encode())
        r = subprocess.run(
            [str(self.binary), *args, "--config", str(self.config_path)],
            env=self.env,
            cwd=self.workdir,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        with open(self.log_path, "a") as log:
            log.write(f"--- exit {r.returncode}; stderr:\n{r.stderr}")
        return r

    def cli_json(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        """Runs `mandate ARGS --json`; the one JSON object it printed."""
        r = self.cli(*args, "--json", stdin=stdin)
        expect(r.returncode == 0, f"`mandate {' '.join(args)}` exit {r.returncode}: {short(r.stderr[-500:])}")
        try:
            out = json.loads(r.stdout)
        except ValueError:
            raise CheckFailed(f"`mandate {' '.join(args)}` stdout is not JSON: {r.stdout!r}")
        expect(isinstance(out, dict), f"stdout is not a JSON object: {r.stdout!r}")
        return out

    def create_user(self, username: str, password: str) -> dict[str, Any]:
        return self.cli_json("user", "create", "--username", username, "--password-stdin",
                             stdin=password + "\n")

    def create_client(self, *args: str) -> dict[str, Any]:
        out = self.cli_json("client", "create", *args)
        expect(isinstance(out.get("client_id"), str) and out["client_id"], f"no client_id in {sorted(out)}")
        return out

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def cleanup(self) -> None:
        """Stops the server and removes its files (see PgDatabase on the database)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(cannot read server log: {e})"

    def dump_logs(self) -> None:
        sys.stderr.write(f"----- {self.workdir.name} server log -----\n{self.logs()}"
                         "----- end of server log -----\n")


# --------------------------------------------------------------------------
# JOSE


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) of RFC 7636."""
    verifier = b64url_encode(secrets.token_bytes(32))
    return verifier, b64url_encode(hashlib.sha256(verifier.encode()).digest())


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a JWT, NOT verified (for messages and prerequisites)."""
    header, payload, _ = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


def verify_access_token(token: str, jwks: dict[str, Any], issuer: str, audience: str) -> dict[str, Any]:
    """Verifies an RFC 9068 access token with joserfc against `jwks`: ES256
    signature by the key its `kid` names, `typ: at+jwt`, `iss`, `aud` (exactly
    this one audience), `exp` in the future, `iat`, `jti`, `sub`, `client_id`.
    Returns the claims."""
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey

    expect(isinstance(token, str) and token.count(".") == 2, f"not a compact JWS: {token!r:.80}")
    header, _ = jwt_parts(token)
    expect_eq(header.get("typ"), "at+jwt", "JWT header typ")
    expect_eq(header.get("alg"), "ES256", "JWT header alg")
    kid = header.get("kid")
    matches = [k for k in jwks.get("keys", []) if k.get("kid") == kid]
    expect(len(matches) == 1, f"header kid {kid!r} matches {len(matches)} keys of the JWKS")
    try:
        decoded = jwt.decode(token, ECKey.import_key(matches[0]), algorithms=["ES256"])
    except JoseError as e:
        raise CheckFailed(f"signature does not verify: {e!r}")
    claims = decoded.claims
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
        client_id={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as e:
        raise CheckFailed(f"claims {claims!r}: {e!r}")
    # RFC 9068 allows an array; mandate promises exactly one audience (SPEC §3).
    aud = claims.get("aud")
    expect(aud == audience or aud == [audience], f"aud: expected {audience!r}, got {aud!r}")
    return claims


def check_user_token_claims(claims: dict[str, Any], *, username: str, client_id: str, scope: str,
                            agent: bool = True, since: int | None = None) -> None:
    """The claims SPEC §3 requires of a user-delegated token from the code flow."""
    expect_eq(claims.get("sub"), username, "sub (the user)")
    expect_eq(claims.get("client_id"), client_id, "client_id")
    expect_eq(set(str(claims.get("scope", "")).split()), set(scope.split()), "scope")
    expect_eq(claims.get("acr"), ACR_PWD, "acr")
    expect_eq(claims.get("amr"), ["pwd"], "amr")
    auth_time = claims.get("auth_time")
    expect(isinstance(auth_time, int), f"auth_time is not an integer: {auth_time!r}")
    now = int(time.time())
    if since is not None:
        expect(since - 5 <= auth_time <= now + 5, f"auth_time {auth_time} not within this run ({since}..{now})")
    expect(claims["exp"] > now, f"exp {claims['exp']} is not in the future (now {now})")
    expect(claims["exp"] - claims["iat"] <= 3600, f"lifetime {claims['exp'] - claims['iat']}s exceeds 3600 s")
    if agent:
        expect_eq(claims.get("client_type"), "ai-agent", "client_type")
        expect_eq(claims.get("act"), {"sub": client_id, "client_type": "ai-agent"}, "act")


# --------------------------------------------------------------------------
# HTML forms


@dataclass
class Control:
    tag: str  # input | button | select | textarea
    type: str
    name: str
    value: str
    id: str
    checked: bool = False
    text: str = ""  # a button's text


@dataclass
class Form:
    action: str
    method: str
    controls: list[Control] = field(default_factory=list)

    def button(self, text: str) -> Control:
        found = [c for c in self.controls if c.tag == "button" and c.text == text]
        found += [c for c in self.controls
                  if c.tag == "input" and c.type in ("submit", "image") and c.value == text]
        expect(len(found) == 1, f"form {self.action!r} has {len(found)} buttons {text!r}; "
               f"buttons: {[c.text or c.value for c in self.controls if c.tag == 'button' or c.type == 'submit']}")
        return found[0]

    def has_button(self, text: str) -> bool:
        return any((c.tag == "button" and c.text == text) or (c.type == "submit" and c.value == text)
                   for c in self.controls)


class _FormParser(HTMLParser):
    """Collects the forms, the `<label for>` texts and the visible text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.labels: dict[str, str] = {}  # control id -> label text
        self.text: list[str] = []
        self._form: Form | None = None
        self._button: Control | None = None
        self._label_for: str | None = None
        self._label_text: list[str] = []
        self._skip = 0  # inside <script>/<style>/<title>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        self.text.append(" ")  # "<dt>Signed in as</dt><dd>alice" reads as two words
        if tag in ("script", "style", "title"):
            self._skip += 1
        elif tag == "form":
            self._form = Form(action=a.get("action", ""), method=a.get("method", "get").lower())
            self.forms.append(self._form)
        elif tag == "label":
            self._label_for = a.get("for")
            self._label_text = []
        elif tag in ("input", "button", "select", "textarea") and self._form is not None:
            default_type = {"input": "text", "button": "submit"}.get(tag, tag)
            c = Control(tag=tag, type=a.get("type", default_type).lower(), name=a.get("name", ""),
                        value=a.get("value", ""), id=a.get("id", ""), checked="checked" in a)
            self._form.controls.append(c)
            if tag == "button":
                self._button = c

    def handle_endtag(self, tag: str) -> None:
        self.text.append(" ")
        if tag in ("script", "style", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag == "form":
            self._form = None
        elif tag == "button":
            self._button = None
        elif tag == "label":
            if self._label_for:
                self.labels[self._label_for] = " ".join("".join(self._label_text).split())
            self._label_for = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        if self._button is not None:
            self._button.text = " ".join((self._button.text + data).split())
        if self._label_for is not None:
            self._label_text.append(data)


@dataclass
class FormPage:
    """A fetched HTML page with its parsed forms."""

    url: str
    status: int
    body: str
    forms: list[Form]
    labels: dict[str, str]
    text: str  # visible text, whitespace collapsed

    @classmethod
    def parse(cls, url: str, status: int, body: str) -> "FormPage":
        p = _FormParser()
        p.feed(body)
        p.close()
        return cls(url=url, status=status, body=body, forms=p.forms, labels=p.labels,
                   text=" ".join("".join(p.text).split()))

    def form_with_button(self, text: str) -> Form:
        found = [f for f in self.forms if f.has_button(text)]
        expect(len(found) == 1, f"{self.url}: {len(found)} forms with a button {text!r}; page: {short(self.text)}")
        return found[0]

    def control_labelled(self, form: Form, label: str) -> Control:
        """The control of `form` whose `<label for>` text is exactly `label`."""
        ids = [i for i, t in self.labels.items() if t == label]
        found = [c for c in form.controls if c.id and c.id in ids]
        expect(len(found) == 1, f"{self.url}: {len(found)} controls labelled {label!r}; labels {self.labels!r}")
        return found[0]

    def checkbox_labels(self, form: Form) -> dict[str, tuple[str, bool]]:
        """label text -> (value, ticked) of the checkboxes of `form` named `scope`."""
        return {self.labels.get(c.id, ""): (c.value, c.checked)
                for c in form.controls if c.type == "checkbox" and c.name == "scope"}

    def submission(self, form: Form, button: str, fill: dict[str, str] | None = None,
                   untick: set[str] | None = None) -> list[tuple[str, str]]:
        """The form data a browser sends when `button` is clicked: hidden and
        text inputs (with `fill[name]` typed in), ticked checkboxes (except the
        values in `untick`), selects/textarea as given, and the clicked button."""
        fill = fill or {}
        untick = untick or set()
        clicked = form.button(button)
        data: list[tuple[str, str]] = []
        for c in form.controls:
            if not c.name:
                continue
            if c.tag == "button" or c.type in ("submit", "image", "reset"):
                if c is clicked:
                    data.append((c.name, c.value))
            elif c.type in ("checkbox", "radio"):
                if c.checked and c.value not in untick:
                    data.append((c.name, c.value or "on"))
            else:
                data.append((c.name, fill.get(c.name, c.value)))
        missing = set(fill) - {c.name for c in form.controls}
        expect(not missing, f"form {form.action!r} has no fields {sorted(missing)}")
        return data


# --------------------------------------------------------------------------
# A person at a browser, over plain HTTP


@dataclass
class Step:
    method: str
    url: str
    status: int
    location: str | None = None


@dataclass
class AuthResult:
    """Where the authorization flow left mandate, and what it showed on the way."""

    redirect: str  # the Location that left the issuer's origin
    params: dict[str, str]  # its query parameters (each once)
    steps: list[Step]
    login_page: FormPage | None = None
    consent_page: FormPage | None = None

    def visited(self, path: str) -> bool:
        return any(urlsplit(s.url).path == path for s in self.steps)


def single_params(url: str) -> dict[str, str]:
    """Query parameters of `url`; a repeated parameter is a failure."""
    q = parse_qs(urlsplit(url).query, keep_blank_values=True)
    dup = [k for k, v in q.items() if len(v) != 1]
    expect(not dup, f"repeated parameters {dup} in {url}")
    return {k: v[0] for k, v in q.items()}


class UserAgent:
    """A browser without JavaScript: a cookie jar, manual redirects, forms."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(issuer))
        self.http = requests.Session()
        self.http.headers["User-Agent"] = "mandate-conformance (python requests)"

    def _same_origin(self, url: str) -> bool:
        return "{0.scheme}://{0.netloc}".format(urlsplit(url)) == self.origin

    def get(self, url: str) -> requests.Response:
        return self.http.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT_SECS)

    def page(self, url: str) -> FormPage:
        r = self.get(url)
        return FormPage.parse(r.url, r.status_code, r.text)

    def authorize(self, url: str, *, username: str, password: str, decision: str = "Allow",
                  untick: set[str] | None = None, expect_login: bool | None = None,
                  expect_consent: bool | None = None) -> AuthResult:
        """Opens the authorization URL and answers every page mandate shows —
        the login form (`Username`, `Password`, `Sign in`) and the consent form
        (`Allow`/`Deny`) — until mandate redirects away from its origin (to
        the client's redirect_uri), which is not followed. `expect_login` /
        `expect_consent` assert whether those pages appeared."""
        steps: list[Step] = []
        login: FormPage | None = None
        consent: FormPage | None = None
        method, target, data = "GET", url, None
        for _ in range(12):
            if method == "GET":
                r = self.http.get(target, allow_redirects=False, timeout=HTTP_TIMEOUT_SECS)
            else:
                r = self.http.post(target, data=data, allow_redirects=False, timeout=HTTP_TIMEOUT_SECS)
            location = r.headers.get("Location")
            steps.append(Step(method, target, r.status_code, location))
            if r.is_redirect or r.status_code in (301, 302, 303, 307, 308):
                expect(location, f"{method} {target}: {r.status_code} without Location")
                nxt = urljoin(target, location)
                if not self._same_origin(nxt):
                    if expect_login is not None:
                        expect_eq(login is not None, expect_login, "login page shown")
                    if expect_consent is not None:
                        expect_eq(consent is not None, expect_consent, "consent page shown")
                    return AuthResult(redirect=nxt, params=single_params(nxt), steps=steps,
                                      login_page=login, consent_page=consent)
                method, target, data = "GET", nxt, None
                continue
            page = FormPage.parse(target, r.status_code, r.text)
            expect(r.status_code == 200, f"{method} {short(target, 200)} answered {r.status_code}: {short(page.text)}")
            path = urlsplit(target).path
            if path == "/login":
                expect(login is None, f"the login page came back after signing in: {short(page.text)}")
                login = page
                form = page.form_with_button("Sign in")
                user = page.control_labelled(form, "Username")
                pwd = page.control_labelled(form, "Password")
                expect_eq(pwd.type, "password", "type of the Password input")
                data = page.submission(form, "Sign in", fill={user.name: username, pwd.name: password})
            elif path == "/consent":
                expect(consent is None, "the consent page came back after a decision")
                consent = page
                form = page.form_with_button(decision)
                data = page.submission(form, decision, untick=untick)
            else:
                raise CheckFailed(f"unexpected page {short(target, 200)}: {short(page.text)}")
            method = form.method.upper()
            expect_eq(method, "POST", f"method of the form on {path}")
            target = urljoin(target, form.action or target)
            expect(self._same_origin(target), f"form on {path} posts off-origin to {target}")
        raise CheckFailed(f"no redirect to the client after {len(steps)} steps: {steps!r}")

    def login_attempt(self, url: str, username: str, password: str) -> FormPage:
        """Follows `url` to the login page and submits it once, returning the
        page answered (for a wrong password: the login page with an error)."""
        r = self.get(url)
        hops = 0
        while r.is_redirect and hops < 5:
            url = urljoin(url, r.headers["Location"])
            expect(self._same_origin(url), f"left the issuer before the login page: {url}")
            r = self.get(url)
            hops += 1
        page = FormPage.parse(url, r.status_code, r.text)
        expect_eq(urlsplit(url).path, "/login", f"page reached from the authorization URL ({short(page.text)})")
        form = page.form_with_button("Sign in")
        user = page.control_labelled(form, "Username")
        pwd = page.control_labelled(form, "Password")
        data = page.submission(form, "Sign in", fill={user.name: username, pwd.name: password})
        r = self.http.post(urljoin(url, form.action or url), data=data, allow_redirects=False,
                           timeout=HTTP_TIMEOUT_SECS)
        return FormPage.parse(r.url, r.status_code, r.text)


def authorize_url(metadata: dict[str, Any], **params: str | list[str]) -> str:
    """The authorization endpoint with `params` (lists become repeated parameters)."""
    pairs: list[tuple[str, str]] = []
    for k, v in params.items():
        for item in (v if isinstance(v, list) else [v]):
            pairs.append((k, item))
    return f"{metadata['authorization_endpoint']}?{urlencode(pairs)}"


def get_json(url: str) -> dict[str, Any]:
    r = requests.get(url, timeout=HTTP_TIMEOUT_SECS)
    expect_eq(r.status_code, 200, f"GET {url} status")
    try:
        doc = r.json()
    except ValueError:
        raise CheckFailed(f"GET {url} is not JSON: {short(r.text)}")
    expect(isinstance(doc, dict), f"GET {url} is not a JSON object")
    return doc


def token_error(r: requests.Response) -> str:
    """`error` of an RFC 6749 §5.2 response (or a description of what came)."""
    try:
        return str(r.json().get("error"))
    except ValueError:
        return f"(status {r.status_code}, not JSON: {short(r.text, 200)})"


def escape(text: str) -> str:
    return html.escape(text, quote=True)
