#!/usr/bin/env python3
"""Third-party-client conformance: the MCP Python SDK against mandate.

An MCP server of the SDK (`MCPServer`, streamable HTTP at /mcp) is the
protected resource: it serves RFC 9728 protected resource metadata naming
mandate, and its `TokenVerifier` checks mandate's JWTs with joserfc against
/jwks.json (signature, typ, iss, `aud` = the MCP server's URL, exp). The SDK's
MCP client with `OAuthClientProvider` (in-memory storage) then does what an
MCP host does: gets a 401, discovers the protected resource and mandate's
metadata, identifies itself, sends the user through login and consent (the
`redirect_handler` plays the user over plain HTTP, like authlib_code_flow.py;
the `callback_handler` hands back code, state and iss), exchanges the code,
calls a tool, and refreshes after its access token is forced to expire.

It runs three times, each against a fresh mandate:
- pre: a client registered by the operator (`mandate client create --public`),
  handed to the SDK through its storage: the baseline of the two below;
- cimd: the client is identified by a Client ID Metadata Document, an https
  URL served by this script on 127.0.0.1 with a certificate of a throw-away
  CA (mandate runs with SSL_CERT_FILE=<that CA> and
  `[registration] allow_loopback_client_ids = true`);
- dcr: no metadata document: the SDK falls back to RFC 7591 dynamic
  registration at mandate's registration_endpoint.

    python mcp_client.py [--pg]        (through conformance/run.sh)
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import ssl
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import httpx2
import requests
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from harness import (
    BASE_CONFIG, HTTP_TIMEOUT_SECS, CheckFailed, Server, Suite, UserAgent, check_user_token_claims, expect,
    expect_eq, free_port, get_json, need, parse_args, short, token_error, verify_access_token,
)

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
MCP_SCOPE = "mcp:tools"
MCP_SCOPE_DESCRIPTION = "Use the MCP server's tools"
MCP_RESOURCE_NAME = "Conformance MCP server"
CLIENT_NAME = {
    "pre": "Conformance MCP Client (pre-registered)",
    "cimd": "Conformance MCP Client (metadata document)",
    "dcr": "Conformance MCP Client (registered)",
}
MODES = ("pre", "cimd", "dcr")
ready_timeout = 30.0

suite = Suite("mcp-python-sdk")


def mandate_config(resource: str, mode: str) -> str:
    extra = ""
    if mode == "cimd":
        # Lets mandate fetch a client_id URL on 127.0.0.1 (tests only).
        extra = "\n[registration]\nallow_loopback_client_ids = true\n"
    return f"""{extra}
{BASE_CONFIG}
[[resources]]
id = "{resource}"
name = "{MCP_RESOURCE_NAME}"

  [[resources.scopes]]
  name = "{MCP_SCOPE}"
  description = "{MCP_SCOPE_DESCRIPTION}"
"""


# --------------------------------------------------------------------------
# A throw-away CA and the HTTPS server of the client's metadata document


def make_tls(dirpath: Path) -> tuple[Path, Path, Path]:
    """A CA certificate (the trust anchor given to mandate as SSL_CERT_FILE)
    and a leaf certificate for 127.0.0.1 signed by it; returns the paths of
    (ca.pem, leaf.pem, leaf.key). A separate leaf keeps strict verifiers
    (which refuse a CA certificate used as a server certificate) happy."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mandate conformance test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, leaf_pem, leaf_key = dirpath / "ca.pem", dirpath / "leaf.pem", dirpath / "leaf.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    leaf_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_pem, leaf_pem, leaf_key


class DocumentServer:
    """Serves JSON documents over HTTPS on 127.0.0.1: `routes` maps a path to
    (status, body); the client's own document is at `path`. Records each GET."""

    def __init__(self, leaf: Path, key: Path, path: str) -> None:
        self.path = path
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.hits: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.hits.append({"path": self.path, "user_agent": self.headers.get("User-Agent", "")})
                status, body = outer.routes.get(self.path, (404, b'{"error":"not found"}'))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "max-age=60")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(str(leaf), str(key))
        self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.origin = f"https://127.0.0.1:{self.port}"
        self.url = self.origin + path
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path: str, document: Any, status: int = 200) -> str:
        """Serves `document` (JSON, or raw bytes) at `path`; returns its URL."""
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.routes[path] = (status, body)
        return self.origin + path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------
# The MCP server (the protected resource)


class MandateTokenVerifier:
    """The MCP server's TokenVerifier: mandate's RFC 9068 JWT, verified with
    joserfc against /jwks.json; `aud` must be this MCP server."""

    def __init__(self, issuer: str, resource: str) -> None:
        self.issuer = issuer
        self.resource = resource
        self.jwks: dict[str, Any] = {"keys": []}
        self.verified: list[dict[str, Any]] = []  # claims of every token accepted
        self.refused: list[str] = []  # why tokens were refused

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = self._verify(token)
        except CheckFailed:
            # The key may be new: fetch the JWKS once more and retry.
            try:
                self.jwks = await anyio.to_thread.run_sync(get_json, f"{self.issuer}/jwks.json")
                claims = self._verify(token)
            except CheckFailed as e:
                self.refused.append(str(e))
                return None
        self.verified.append(claims)
        return AccessToken(
            token=token, client_id=claims["client_id"], scopes=str(claims.get("scope", "")).split(),
            expires_at=claims["exp"], resource=self.resource, subject=claims["sub"], claims=claims,
        )

    def _verify(self, token: str) -> dict[str, Any]:
        return verify_access_token(token, self.jwks, self.issuer, self.resource)


class McpServerThread:
    """MCPServer with one tool, `whoami`, served by uvicorn on a thread."""

    def __init__(self, port: int, issuer: str, resource: str) -> None:
        self.verifier = MandateTokenVerifier(issuer, resource)
        mcp = MCPServer(
            name="mandate-conformance",
            token_verifier=self.verifier,
            auth=AuthSettings(
                issuer_url=issuer,
                resource_server_url=resource,
                required_scopes=[MCP_SCOPE],
                validate_token_resource=True,
            ),
        )

        @mcp.tool()
        def whoami() -> str:
            """The user the caller acts for (the token's `sub`)."""
            tok = get_access_token()
            return tok.subject if tok and tok.subject else "anonymous"

        app = mcp.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + ready_timeout
        while not self.server.started:
            expect(self.thread.is_alive(), "the MCP server thread died while starting")
            expect(time.monotonic() < deadline, "the MCP server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# --------------------------------------------------------------------------
# The MCP client side


class MemoryStorage:
    """TokenStorage in memory (what the SDK's examples do)."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Person:
    """redirect_handler + callback_handler: the user at the browser, over HTTP."""

    def __init__(self, issuer: str) -> None:
        self.ua = UserAgent(issuer)
        self.results: list[Any] = []  # harness.AuthResult of each authorization
        self.urls: list[str] = []

    async def redirect_handler(self, url: str) -> None:
        self.urls.append(url)
        res = await anyio.to_thread.run_sync(
            lambda: self.ua.authorize(url, username=USERNAME, password=PASSWORD))
        self.results.append(res)

    async def callback_handler(self) -> AuthorizationCodeResult:
        expect(self.results, "callback_handler called before any authorization")
        p = self.results[-1].params
        expect("code" in p, f"the authorization response has no code: {p!r}")
        return AuthorizationCodeResult(code=p["code"], state=p.get("state"), iss=p.get("iss"))


class RequestLog:
    """Every request the client's HTTP stack sends (auth flow included)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def on_request(self, request: httpx2.Request) -> None:
        body = b""
        if request.method == "POST":
            try:
                body = request.content
            except Exception:  # a streaming body (not one of the OAuth requests)
                body = b""
        self.entries.append({"method": request.method, "url": str(request.url), "body": body, "status": None})

    async def on_response(self, response: httpx2.Response) -> None:
        for e in reversed(self.entries):
            if e["url"] == str(response.request.url) and e["status"] is None:
                e["status"] = response.status_code
                if response.request.method == "POST" and urlsplit(e["url"]).path in ("/register", "/token"):
                    await response.aread()
                    e["response"] = response.text
                break

    def find(self, method: str, path: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["method"] == method and urlsplit(e["url"]).path == path]

    def form(self, entry: dict[str, Any]) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(entry["body"].decode(), keep_blank_values=True).items()}

    def summary(self) -> str:
        return "; ".join(f"{e['method']} {urlsplit(e['url']).path} -> {e['status']}" for e in self.entries)


def tool_text(result: Any) -> str:
    parts = [getattr(c, "text", "") for c in (getattr(result, "content", None) or [])]
    return "".join(parts)


async def call_whoami(ctx: dict[str, Any], mode: str, times: int) -> list[str]:
    """Connects the SDK client (through OAuth when needed), calls `whoami`
    `times` times; before each call after the first the access token is
    forced to expire so that the provider refreshes it."""
    r = ctx[mode]
    out: list[str] = []
    async with httpx2.AsyncClient(
        auth=r["provider"],
        timeout=httpx2.Timeout(30.0),
        event_hooks={"request": [r["log"].on_request], "response": [r["log"].on_response]},
    ) as http:
        async with Client(streamable_http_client(r["mcp_url"], http_client=http)) as client:
            for i in range(times):
                if i > 0:
                    r["provider"].context.token_expiry_time = time.time() - 1
                result = await client.call_tool("whoami", {})
                expect(not getattr(result, "is_error", False) and not getattr(result, "isError", False),
                       f"whoami answered an error: {result!r}")
                out.append(tool_text(result))
    return out


# --------------------------------------------------------------------------
# Checks, once per mode


def add_checks(mode: str) -> None:
    label = {"pre": "pre-registered client", "cimd": "Client ID Metadata Document",
             "dcr": "dynamic registration"}[mode]

    @suite.check(f"{mode}: mandate + MCP server (resource) + user alice" +
                 (" + HTTPS metadata document" if mode == "cimd" else ""))
    def c_setup(ctx: dict[str, Any]) -> None:
        r: dict[str, Any] = {}
        ctx[mode] = r
        mcp_port = free_port()
        r["mcp_url"] = f"http://127.0.0.1:{mcp_port}/mcp"
        callback = f"http://127.0.0.1:{free_port()}/callback"  # caught by Person, never followed
        env: dict[str, str] = {}
        if mode == "cimd":
            tmp = Path(tempfile.mkdtemp(prefix="mandate-conformance-tls-"))
            ctx.setdefault("tmpdirs", []).append(tmp)
            ca, leaf, key = make_tls(tmp)
            doc = DocumentServer(leaf, key, "/mcp-client/metadata.json")
            ctx.setdefault("closers", []).append(doc.stop)
            doc.serve(doc.path, {
                "client_id": doc.url,
                "client_name": CLIENT_NAME[mode],
                "redirect_uris": [callback],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            })
            r["doc"] = doc
            env["SSL_CERT_FILE"] = str(ca)
        server = Server(mandate_config(r["mcp_url"], mode), env=env, pg=ctx["pg"], label=f"mcp-{mode}")
        ctx.setdefault("servers", []).append(server)
        server.start()
        server.create_user(USERNAME, PASSWORD)
        r["server"] = server
        r["issuer"] = server.issuer
        mcp = McpServerThread(mcp_port, server.issuer, r["mcp_url"])
        ctx.setdefault("closers", []).append(mcp.stop)
        mcp.start()
        r["mcp"] = mcp
        r["person"] = Person(server.issuer)
        r["storage"] = MemoryStorage()
        r["log"] = RequestLog()
        r["provider"] = OAuthClientProvider(
            server_url=r["mcp_url"],
            client_metadata=OAuthClientMetadata(
                redirect_uris=[callback],
                token_endpoint_auth_method="none",
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                client_name=CLIENT_NAME[mode],
            ),
            storage=r["storage"],
            redirect_handler=r["person"].redirect_handler,
            callback_handler=r["person"].callback_handler,
            client_metadata_url=r["doc"].url if mode == "cimd" else None,
        )
        r["callback"] = callback
        if mode == "pre":
            # Registered by the operator; the SDK finds it in its storage.
            client = server.create_client("--name", CLIENT_NAME[mode], "--public", "--redirect-uri", callback,
                                          "--resource", r["mcp_url"], "--scope", MCP_SCOPE)
            r["storage"].client_info = OAuthClientInformationFull(
                client_id=client["client_id"], token_endpoint_auth_method="none", redirect_uris=[callback],
                grant_types=["authorization_code", "refresh_token"], response_types=["code"])

    @suite.check(f"{mode}: MCP server: 401 with resource_metadata; RFC 9728 metadata names mandate")
    def c_prm(ctx: dict[str, Any]) -> None:
        need(ctx, mode)
        r = ctx[mode]
        need(r, "provider")
        resp = requests.post(r["mcp_url"], json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                             headers={"Accept": "application/json, text/event-stream"}, timeout=HTTP_TIMEOUT_SECS)
        expect_eq(resp.status_code, 401, "status without a token")
        www = resp.headers.get("WWW-Authenticate", "")
        expect("resource_metadata=" in www, f"WWW-Authenticate {www!r}")
        split = urlsplit(r["mcp_url"])
        prm = get_json(f"{split.scheme}://{split.netloc}/.well-known/oauth-protected-resource{split.path}")
        expect_eq(prm.get("resource"), r["mcp_url"], "resource")
        expect_eq(prm.get("authorization_servers"), [r["issuer"]], "authorization_servers")

    @suite.check(f"{mode}: mandate metadata at both well-known paths: same document, CIMD and registration")
    def c_as_metadata(ctx: dict[str, Any]) -> None:
        need(ctx, mode)
        r = ctx[mode]
        need(r, "issuer")
        a = get_json(f"{r['issuer']}/.well-known/oauth-authorization-server")
        b = get_json(f"{r['issuer']}/.well-known/openid-configuration")
        expect(a == b, "the two metadata documents differ")
        expect_eq(a.get("client_id_metadata_document_supported"), True, "client_id_metadata_document_supported")
        expect(str(a.get("registration_endpoint", "")).startswith(r["issuer"] + "/"),
               f"registration_endpoint {a.get('registration_endpoint')!r}")
        expect(MCP_SCOPE in (a.get("scopes_supported") or []), f"{MCP_SCOPE} not in scopes_supported")

    @suite.check(f"{mode}: the SDK client authorizes ({label}) and calls a tool as alice")
    def c_connect(ctx: dict[str, Any]) -> None:
        need(ctx, mode)
        r = ctx[mode]
        need(r, "provider")
        try:
            out = anyio.run(call_whoami, ctx, mode, 1)
        except BaseException as e:  # an ExceptionGroup from the SDK's task groups, typically
            raise CheckFailed(f"{describe(e)}; client requests: {r['log'].summary()}"
                              + mandate_refusals(r))
        expect_eq(out, [USERNAME], "whoami result")
        r["connected"] = True

    @suite.check(f"{mode}: discovery: PRM, then mandate's RFC 8414 metadata; " + {
        "pre": "no registration, the stored client_id",
        "cimd": "no registration, mandate fetched the document, its URL is the client_id",
        "dcr": "POST /register 201, then its client_id"}[mode])
    def c_requests(ctx: dict[str, Any]) -> None:
        need(ctx, mode)
        r = ctx[mode]
        need(r, "connected")
        log: RequestLog = r["log"]
        paths = [(e["method"], urlsplit(e["url"]).path, e["status"]) for e in log.entries]
        expect(any(p[1].startswith("/.well-known/oauth-protected-resource") and p[2] == 200 for p in paths),
               f"no protected resource metadata fetched: {log.summary()}")
        expect(any(p[1] in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")
                   and p[2] == 200 for p in paths), f"no authorization server metadata fetched: {log.summary()}")
        registrations = log.find("POST", "/register")
        client_id = r["storage"].client_info.client_id if r["storage"].client_info else None
        if mode == "pre":
            expect_eq(registrations, [], "registration requests")
        elif mode == "cimd":
            expect_eq(registrations, [], "registration requests")
            expect_eq(client_id, r["doc"].url, "client_id")
            expect(any(h["path"] == r["doc"].path for h in r["doc"].hits),
                   f"mandate never fetched the metadata document (hits {r['doc'].hits!r})")
        else:
            expect_eq([e["status"] for e in registrations], [201], "status of POST /register")
            expect(client_id, "no client_id registered")
        auth = single(r["person"].urls)
        q = {k: v[0] for k, v in parse_qs(urlsplit(auth).query).items()}
        expect_eq(q.get("client_id"), client_id, "client_id of the authorization request")
        expect_eq(q.get("resource"), r["mcp_url"], "resource of the authorization request")
        expect_eq(q.get("code_challenge_method"), "S256", "code_challenge_method")
        expect_eq(q.get("scope"), MCP_SCOPE, "scope")
        token = [log.form(e) for e in log.find("POST", "/token")]
        expect(token and token[0].get("grant_type") == "authorization_code", f"token requests {token!r}")
        expect_eq(token[0].get("resource"), r["mcp_url"], "resource of the code exchange")
        expect(token[0].get("code_verifier"), "no code_verifier in the code exchange")
        r["client_id"] = client_id

    @suite.check(f"{mode}: consent named the client, AI agent, the MCP resource and its scope description"
                 + ("; the document's and the redirect URI's hosts" if mode == "cimd" else "")
                 + "; iss in the redirect")
    def c_consent(ctx: dict[str, Any]) -> None:
        need(ctx, mode)
        r = ctx[mode]
        need(r, "connected")
        res = single(r["person"].results)
        page = res.consent_page
        expect(page is not None, "no consent page was shown")
        for text in (CLIENT_NAME[mode], "AI agent", MCP_RESOURCE_NAME):
            expect(text in page.text, f"consent page does not show {text!r}: {short(page.text)}")
        boxes = page.checkbox_labels(page.form_with_button("Allow"))
        expect_eq(boxes.get(MCP_SCOPE_DESCRIPTION), (MCP_SCOPE, True), f"checkbox {MCP_SCOPE_DESCRIPTION!r}")
        expect_eq(res.params.get("iss"), r["issuer"], "iss")
        if mode == "cimd":
            # SPEC §3: the name alone proves nothing; the document's host and
            # the redirect URI's host are shown with it.
            for what, host in (("document", urlsplit(r["doc"].url).netloc), ("redirect URI", urlsplit(r["callback"]).netloc)):
                expect(host in page.text, f"consent page does not show the {what}'s host {host}: {short(page.text)}")

    @suite.check(f"{mode}: the MCP server accepted a token with aud = its URL, sub alice and act = the client")
    def c_token(ctx: dict[str, Any]) -> None:
        need(ctx, mode)
        r = ctx[mode]
        need(r, "client_id")
        verified = r["mcp"].verifier.verified
        expect(verified, f"no token accepted; refused: {r['mcp'].verifier.refused!r}")
        check_user_token_claims(verified[-1], username=USERNAME, client_id=r["client_id"], scope=MCP_SCOPE)

    @suite.check(f"{mode}: after forced expiry the provider refreshes (resource, rotation) and calls again")
    def c_refresh(ctx: dict[str, Any]) -> None:
        need(ctx, mode)
        r = ctx[mode]
        need(r, "client_id")
        first = r["storage"].tokens
        expect(first and first.refresh_token, f"no refresh token stored: {first!r}")
        n_token = len(r["log"].find("POST", "/token"))
        n_verified = len(r["mcp"].verifier.verified)
        try:
            # A new connection with the stored tokens; the second call refreshes.
            out = anyio.run(call_whoami, ctx, mode, 2)
        except BaseException as e:
            raise CheckFailed(f"{describe(e)}; client requests: {r['log'].summary()}" + mandate_refusals(r))
        expect_eq(out, [USERNAME, USERNAME], "whoami results")
        refreshes = [r["log"].form(e) for e in r["log"].find("POST", "/token")[n_token:]]
        expect_eq([f.get("grant_type") for f in refreshes], ["refresh_token"], "token requests of the refresh")
        expect_eq(refreshes[0].get("resource"), r["mcp_url"], "resource of the refresh")
        expect_eq(refreshes[0].get("refresh_token"), first.refresh_token, "refresh token presented")
        second = r["storage"].tokens
        expect(second.refresh_token and second.refresh_token != first.refresh_token, "the refresh token did not rotate")
        verified = r["mcp"].verifier.verified
        seen_before = {c["jti"] for c in verified[:n_verified]}
        fresh = {c["jti"] for c in verified[n_verified:]} - seen_before
        expect(len(fresh) == 1, f"access tokens new to the MCP server after the refresh: {sorted(fresh)}")
        r["old_refresh_token"] = first.refresh_token

    @suite.check(f"{mode}: the refresh token used by the SDK is then invalid_grant")
    def c_reuse(ctx: dict[str, Any]) -> None:
        need(ctx, mode)
        r = ctx[mode]
        need(r, "old_refresh_token")
        resp = requests.post(f"{r['issuer']}/token", timeout=HTTP_TIMEOUT_SECS, data={
            "grant_type": "refresh_token", "refresh_token": r["old_refresh_token"], "client_id": r["client_id"],
            "resource": r["mcp_url"]})
        expect_eq((resp.status_code, token_error(resp)), (400, "invalid_grant"), f"reuse ({short(resp.text)})")

    if mode == "cimd":
        @suite.check("cimd: a bad metadata document or an unlisted redirect_uri: error page 400, no redirect")
        def c_bad_documents(ctx: dict[str, Any]) -> None:
            need(ctx, mode)
            r = ctx[mode]
            need(r, "doc")
            doc: DocumentServer = r["doc"]
            good = {"client_name": "Evil twin", "redirect_uris": [r["callback"]],
                    "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                    "token_endpoint_auth_method": "none"}
            cases = {
                "client_id differs from its URL": (doc.serve("/bad/other-id.json", {**good, "client_id": doc.url}),
                                                   r["callback"]),
                "not JSON": (doc.serve("/bad/not-json.json", b"{this is not json"), r["callback"]),
                "no client_id": (doc.serve("/bad/no-id.json", good), r["callback"]),
                "no redirect_uris": (doc.serve("/bad/no-redirects.json", {
                    k: v for k, v in {**good, "client_id": doc.origin + "/bad/no-redirects.json"}.items()
                    if k != "redirect_uris"}), r["callback"]),
                "document not found (404)": (doc.origin + "/bad/missing.json", r["callback"]),
                "redirect_uri not in the document": (doc.url, r["callback"].replace("/callback", "/elsewhere")),
            }
            ua = UserAgent(r["issuer"])  # signed out: nothing may get as far as the login page

            def authorize(client_id: str, redirect_uri: str) -> requests.Response:
                return ua.get(f"{r['issuer']}/authorize?" + urlencode({
                    "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                    "scope": MCP_SCOPE, "state": "s", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                    "code_challenge_method": "S256", "resource": r["mcp_url"]}))

            # The control: the good document with the same parameters goes on to the login page.
            ok = authorize(doc.url, r["callback"])
            expect(ok.status_code in (302, 303) and urlsplit(ok.headers.get("Location", "")).path == "/login",
                   f"control (the good document): {ok.status_code} Location={ok.headers.get('Location')!r}")
            problems = []
            for what, (client_id, redirect_uri) in cases.items():
                resp = authorize(client_id, redirect_uri)
                if resp.status_code != 400 or "Location" in resp.headers:
                    problems.append(f"{what}: {resp.status_code} Location={resp.headers.get('Location')!r}")
                elif not resp.headers.get("Content-Type", "").startswith("text/html"):
                    problems.append(f"{what}: Content-Type {resp.headers.get('Content-Type')!r}")
            expect(not problems, "; ".join(problems))

    if mode == "dcr":
        @suite.check("dcr: /register refuses grants reserved to operator clients (client_credentials)")
        def c_register_refuses(ctx: dict[str, Any]) -> None:
            need(ctx, mode)
            r = ctx[mode]
            need(r, "issuer")
            endpoint = get_json(f"{r['issuer']}/.well-known/oauth-authorization-server")["registration_endpoint"]
            resp = requests.post(endpoint, timeout=HTTP_TIMEOUT_SECS, json={
                "client_name": "Greedy", "redirect_uris": [r["callback"]], "token_endpoint_auth_method": "none",
                "grant_types": ["client_credentials"]})
            expect_eq(resp.status_code, 400, f"status ({short(resp.text)})")
            expect_eq(token_error(resp), "invalid_client_metadata", "error (RFC 7591 §3.2.2)")

    @suite.check(f"{mode}: stop the MCP server and mandate")
    def c_stop(ctx: dict[str, Any]) -> None:
        need(ctx, mode)
        r = ctx[mode]
        if "mcp" in r:
            r["mcp"].stop()
        if "server" in r:
            rc = r["server"].cli("audit", "verify")
            expect_eq(rc.returncode, 0, f"audit verify ({short(rc.stdout + rc.stderr)})")


def single(items: list[Any]) -> Any:
    expect(len(items) == 1, f"expected exactly one, got {len(items)}: {items!r}")
    return items[0]


def describe(e: BaseException) -> str:
    """One line for an exception, unwrapping (nested) exception groups."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{e.__class__.__name__}: {e}"


def mandate_refusals(r: dict[str, Any]) -> str:
    """The mandate log lines that explain refusals, for the failure message."""
    server = r.get("server")
    if server is None:
        return ""
    lines = [l for l in server.logs().splitlines() if "refused" in l or "ERROR" in l or "WARN" in l]
    return ("; mandate said: " + " | ".join(short(l, 300) for l in lines[-4:])) if lines else ""


for m in MODES:
    add_checks(m)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    # The SDK logs its OAuth flow errors; keep them (stderr) for failures.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    ctx: dict[str, Any] = {"pg": args.pg}

    def cleanup(failed: bool) -> None:
        for close in reversed(ctx.get("closers", [])):
            try:
                close()
            except Exception as e:  # keep cleaning up
                sys.stderr.write(f"warning: cleanup: {e!r}\n")
        for server in ctx.get("servers", []):
            server.stop()
            if failed:
                server.dump_logs()
            server.cleanup()
        import shutil
        for d in ctx.get("tmpdirs", []):
            shutil.rmtree(d, ignore_errors=True)

    return suite.run(ctx, cleanup)


if __name__ == "__main__":
    sys.exit(main())
