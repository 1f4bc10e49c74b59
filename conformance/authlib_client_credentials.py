#!/usr/bin/env python3
"""Third-party-client conformance: authlib's OAuth2Session against mandate.

Starts `mandate serve` in a temporary directory, registers a confidential
client with the operator CLI, then drives the client credentials grant with
authlib (client_secret_basic and client_secret_post) and verifies the issued
RFC 9068 access tokens with joserfc, an independent JOSE implementation,
against the served JWKS. Failure paths (wrong secret, scope of another
resource, unknown resource) are checked through authlib as well.

Prints one line per check (`ok - name` / `FAIL - name: reason`) and ends with
`N passed, M failed`. Exits 1 when any check failed. Run it through
conformance/run.sh, which provides the pinned dependencies.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey, KeySet

from harness import (
    BASE_CONFIG, HTTP_TIMEOUT_SECS, CheckFailed, Server, Suite, b64url_decode, b64url_encode, expect,
    expect_eq, need, parse_args,
)

RESOURCE = "https://api.example.com"
OTHER_RESOURCE_SCOPE = "files:read"
UNKNOWN_RESOURCE = "https://nope.example.com"
SCOPE = "invoices:read"
CLIENT_TYPE = "ai-agent"

suite = Suite("authlib-client-credentials")


# --------------------------------------------------------------------------
# Helpers


def session(ctx: dict[str, Any], method: str, secret: str | None = None) -> OAuth2Session:
    """An authlib session for the registered client; records every token
    endpoint response (authlib's access_token_response hook) in ctx."""
    s = OAuth2Session(
        client_id=ctx["client_id"],
        client_secret=ctx["client_secret"] if secret is None else secret,
        token_endpoint_auth_method=method,
        scope=SCOPE,
    )

    def capture(resp: requests.Response) -> requests.Response:
        ctx["last_token_response"] = resp
        return resp

    s.register_compliance_hook("access_token_response", capture)
    return s


def served_key(ctx: dict[str, Any], kid: str) -> ECKey:
    need(ctx, "jwks")
    matches = [k for k in ctx["jwks"]["keys"] if k.get("kid") == kid]
    expect(len(matches) == 1, f"kid {kid!r} matches {len(matches)} keys in the JWKS")
    jwk = matches[0]
    expect_eq(jwk.get("alg"), "ES256", "JWK alg")
    expect_eq(jwk.get("use"), "sig", "JWK use")
    expect("d" not in jwk, "JWKS exposes a private key component (d)")
    return ECKey.import_key(jwk)


def verify(ctx: dict[str, Any], token: str) -> jwt.Token:
    """Verifies the signature with the JWKS key named by the header's kid."""
    header = json.loads(b64url_decode(token.split(".")[0]))
    kid = header.get("kid")
    expect(isinstance(kid, str) and kid != "", f"header kid missing: {header!r}")
    key = served_key(ctx, kid)
    return jwt.decode(token, key, algorithms=["ES256"])


# --------------------------------------------------------------------------
# Checks

@suite.check("server starts and /readyz answers 200")
def c_server(ctx: dict[str, Any]) -> None:
    server: Server = ctx["server"]
    server.start()
    ctx["issuer"] = server.issuer


@suite.check("operator CLI creates a client_credentials client")
def c_client(ctx: dict[str, Any]) -> None:
    need(ctx, "issuer")
    server: Server = ctx["server"]
    r = server.cli(
        "client", "create",
        "--name", "conf",
        "--grant", "client_credentials",
        "--resource", RESOURCE,
        "--scope", SCOPE,
        "--json",
    )
    expect(r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()[-500:]}")
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise CheckFailed(f"stdout is not one JSON object: {r.stdout!r}")
    expect(isinstance(out, dict), f"stdout is not a JSON object: {r.stdout!r}")
    for k in ("client_id", "client_secret"):
        expect(isinstance(out.get(k), str) and out[k] != "", f"no {k} in {sorted(out)}")
    ctx["client_id"] = out["client_id"]
    ctx["client_secret"] = out["client_secret"]


@suite.check("metadata: both well-known paths serve the same document")
def c_metadata_same(ctx: dict[str, Any]) -> None:
    need(ctx, "issuer")
    s = OAuth2Session()
    docs = {}
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        r = s.get(ctx["issuer"] + path, withhold_token=True, timeout=HTTP_TIMEOUT_SECS)
        expect_eq(r.status_code, 200, f"GET {path} status")
        ctype = r.headers.get("Content-Type", "")
        expect(ctype.startswith("application/json"), f"GET {path} Content-Type {ctype!r}")
        docs[path] = r.json()
        expect(isinstance(docs[path], dict), f"GET {path} is not a JSON object")
    a, b = docs.values()
    expect(a == b, f"documents differ: {a!r} vs {b!r}")
    ctx["metadata"] = a


@suite.check("metadata: issuer is the configured issuer")
def c_metadata_issuer(ctx: dict[str, Any]) -> None:
    need(ctx, "metadata")
    expect_eq(ctx["metadata"].get("issuer"), ctx["issuer"], "issuer")


@suite.check("metadata: token_endpoint and jwks_uri are under the issuer")
def c_metadata_endpoints(ctx: dict[str, Any]) -> None:
    need(ctx, "metadata")
    md = ctx["metadata"]
    base = ctx["issuer"].rstrip("/") + "/"
    for k in ("token_endpoint", "jwks_uri"):
        v = md.get(k)
        expect(isinstance(v, str) and v.startswith(base), f"{k} {v!r} is not under {base!r}")


@suite.check("metadata: advertises client_credentials, basic/post auth and the scopes")
def c_metadata_support(ctx: dict[str, Any]) -> None:
    need(ctx, "metadata")
    md = ctx["metadata"]
    grants = md.get("grant_types_supported") or []
    expect("client_credentials" in grants, f"grant_types_supported {grants!r}")
    methods = md.get("token_endpoint_auth_methods_supported") or []
    for m in ("client_secret_basic", "client_secret_post"):
        expect(m in methods, f"{m} not in token_endpoint_auth_methods_supported {methods!r}")
    scopes = md.get("scopes_supported") or []
    for sc in (SCOPE, OTHER_RESOURCE_SCOPE):
        expect(sc in scopes, f"{sc} not in scopes_supported {scopes!r}")


@suite.check("jwks: served JWK Set has ES256 signing keys with kid")
def c_jwks(ctx: dict[str, Any]) -> None:
    need(ctx, "metadata")
    r = requests.get(ctx["metadata"]["jwks_uri"], timeout=HTTP_TIMEOUT_SECS)
    expect_eq(r.status_code, 200, "GET jwks_uri status")
    jwks = r.json()
    keys = jwks.get("keys")
    expect(isinstance(keys, list) and keys, f"no keys: {jwks!r}")
    for k in keys:
        expect(isinstance(k.get("kid"), str) and k["kid"], f"key without kid: {k!r}")
        expect_eq(k.get("alg"), "ES256", f"alg of {k.get('kid')}")
        expect_eq(k.get("use"), "sig", f"use of {k.get('kid')}")
        expect_eq((k.get("kty"), k.get("crv")), ("EC", "P-256"), f"kty/crv of {k.get('kid')}")
        expect("d" not in k, f"private component in {k.get('kid')}")
    KeySet.import_key_set(jwks)  # the independent library accepts the set
    ctx["jwks"] = jwks


def fetch(ctx: dict[str, Any], method: str) -> None:
    need(ctx, "client_id", "metadata")
    s = session(ctx, method)
    ctx.pop("last_token_response", None)
    before = int(time.time())
    token = s.fetch_token(
        ctx["metadata"]["token_endpoint"],
        grant_type="client_credentials",
        resource=RESOURCE,
        scope=SCOPE,
        timeout=HTTP_TIMEOUT_SECS,
    )
    after = int(time.time())
    resp: requests.Response = ctx["last_token_response"]
    sent = resp.request
    body = sent.body.decode() if isinstance(sent.body, bytes) else (sent.body or "")
    auth_header = sent.headers.get("Authorization", "")
    if method == "client_secret_basic":
        expect(auth_header.startswith("Basic "), "authlib did not send HTTP Basic")
        expect("client_secret=" not in body, "secret also sent in the body")
    else:
        expect(auth_header == "", f"unexpected Authorization header {auth_header!r}")
        expect("client_secret=" in body, "authlib did not send client_secret in the body")
    expect("resource=" in body, f"resource not in request body {body!r}")
    expect_eq(resp.status_code, 200, "token response status")
    expect_eq(resp.headers.get("Cache-Control"), "no-store", "Cache-Control")
    expect(isinstance(token.get("access_token"), str) and token["access_token"], "no access_token")
    expect_eq(token.get("token_type"), "Bearer", "token_type")
    expires_in = token.get("expires_in")
    expect(isinstance(expires_in, int) and expires_in > 0, f"expires_in {expires_in!r}")
    expect_eq(token.get("scope"), SCOPE, "scope")
    expect("refresh_token" not in token, "client_credentials must not issue a refresh_token")
    ctx[f"token:{method}"] = dict(token, _before=before, _after=after)


def verify_claims(ctx: dict[str, Any], method: str) -> None:
    need(ctx, f"token:{method}")
    tok = ctx[f"token:{method}"]
    try:
        decoded = verify(ctx, tok["access_token"])
    except JoseError as e:
        raise CheckFailed(f"joserfc rejected the token: {e!r}")
    h, c = decoded.header, decoded.claims
    expect_eq(h.get("alg"), "ES256", "header alg")
    expect_eq(h.get("typ"), "at+jwt", "header typ")
    expect_eq(c.get("iss"), ctx["issuer"], "iss")
    expect_eq(c.get("iss"), ctx["metadata"]["issuer"], "iss vs metadata issuer")
    expect_eq(c.get("aud"), RESOURCE, "aud (a single string)")
    expect_eq(c.get("sub"), ctx["client_id"], "sub")
    expect_eq(c.get("client_id"), ctx["client_id"], "client_id")
    expect_eq(c.get("scope"), SCOPE, "scope")
    expect_eq(c.get("client_type"), CLIENT_TYPE, "client_type")
    expect("act" not in c, f"unexpected act claim {c.get('act')!r}")
    exp, iat = c.get("exp"), c.get("iat")
    expect(isinstance(exp, int) and isinstance(iat, int), f"exp/iat not integers: {exp!r}/{iat!r}")
    now = time.time()
    expect(exp > now, f"exp {exp} is not after now {now:.0f}")
    expect(tok["_before"] - 5 <= iat <= tok["_after"] + 5, f"iat {iat} not around the request time")
    expect_eq(exp - iat, tok["expires_in"], "exp - iat vs expires_in")
    jti = c.get("jti")
    expect(isinstance(jti, str) and jti != "", f"jti {jti!r}")
    # The same claims, validated by joserfc's own registry as a resource server would.
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ctx["issuer"]},
        aud={"essential": True, "value": RESOURCE},
        sub={"essential": True, "value": ctx["client_id"]},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    )
    try:
        registry.validate(c)
    except JoseError as e:
        raise CheckFailed(f"joserfc claims validation: {e!r}")
    ctx[f"jti:{method}"] = jti


@suite.check("client_secret_basic: authlib fetch_token(client_credentials) succeeds")
def c_fetch_basic(ctx: dict[str, Any]) -> None:
    fetch(ctx, "client_secret_basic")


@suite.check("client_secret_basic: access token verifies against the JWKS with RFC 9068 claims")
def c_verify_basic(ctx: dict[str, Any]) -> None:
    verify_claims(ctx, "client_secret_basic")


@suite.check("client_secret_post: authlib fetch_token(client_credentials) succeeds")
def c_fetch_post(ctx: dict[str, Any]) -> None:
    fetch(ctx, "client_secret_post")


@suite.check("client_secret_post: access token verifies against the JWKS with RFC 9068 claims")
def c_verify_post(ctx: dict[str, Any]) -> None:
    verify_claims(ctx, "client_secret_post")


@suite.check("jti differs between the two tokens")
def c_jti_distinct(ctx: dict[str, Any]) -> None:
    need(ctx, "jti:client_secret_basic", "jti:client_secret_post")
    expect(
        ctx["jti:client_secret_basic"] != ctx["jti:client_secret_post"],
        f"both tokens have jti {ctx['jti:client_secret_post']!r}",
    )


@suite.check("a token tampered in its payload fails verification")
def c_tampered(ctx: dict[str, Any]) -> None:
    need(ctx, "token:client_secret_basic")
    token = ctx["token:client_secret_basic"]["access_token"]
    header, payload, sig = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["scope"] = "invoices:read invoices:write"
    forged = ".".join([header, b64url_encode(json.dumps(claims, separators=(",", ":")).encode()), sig])
    expect(forged != token, "tampering did not change the token")
    try:
        verify(ctx, forged)
    except BadSignatureError:
        pass
    else:
        raise CheckFailed("the tampered token verified")
    # And the untampered one still does, so the failure above is the tampering.
    verify(ctx, token)


def expect_oauth_error(ctx: dict[str, Any], code: str, method: str = "client_secret_basic",
                       secret: str | None = None, **params: str) -> None:
    need(ctx, "client_id", "metadata")
    s = session(ctx, method, secret=secret)
    try:
        token = s.fetch_token(
            ctx["metadata"]["token_endpoint"],
            grant_type="client_credentials",
            timeout=HTTP_TIMEOUT_SECS,
            **params,
        )
    except OAuthError as e:
        expect_eq(e.error, code, f"OAuthError.error (description {e.description!r})")
        return
    raise CheckFailed(f"no OAuthError; got a token with scope {token.get('scope')!r}")


@suite.check("wrong secret (basic): authlib raises OAuthError invalid_client")
def c_wrong_secret_basic(ctx: dict[str, Any]) -> None:
    expect_oauth_error(ctx, "invalid_client", secret="not-the-secret", resource=RESOURCE, scope=SCOPE)


@suite.check("wrong secret (post): authlib raises OAuthError invalid_client")
def c_wrong_secret_post(ctx: dict[str, Any]) -> None:
    expect_oauth_error(ctx, "invalid_client", method="client_secret_post", secret="not-the-secret",
                       resource=RESOURCE, scope=SCOPE)


@suite.check("wrong secret: raw HTTP response is 401 with WWW-Authenticate")
def c_wrong_secret_raw(ctx: dict[str, Any]) -> None:
    need(ctx, "client_id", "metadata")
    r = requests.post(
        ctx["metadata"]["token_endpoint"],
        auth=(ctx["client_id"], "not-the-secret"),
        data={"grant_type": "client_credentials", "resource": RESOURCE, "scope": SCOPE},
        timeout=HTTP_TIMEOUT_SECS,
    )
    expect_eq(r.status_code, 401, "status")
    expect(r.headers.get("WWW-Authenticate", "") != "", f"no WWW-Authenticate; headers {dict(r.headers)!r}")
    expect_eq(r.json().get("error"), "invalid_client", "error")
    expect_eq(r.headers.get("Cache-Control"), "no-store", "Cache-Control")


@suite.check("scope of another resource: authlib raises OAuthError invalid_scope")
def c_invalid_scope(ctx: dict[str, Any]) -> None:
    expect_oauth_error(ctx, "invalid_scope", resource=RESOURCE, scope=OTHER_RESOURCE_SCOPE)


@suite.check("unknown resource: authlib raises OAuthError invalid_target")
def c_invalid_target(ctx: dict[str, Any]) -> None:
    expect_oauth_error(ctx, "invalid_target", resource=UNKNOWN_RESOURCE, scope=SCOPE)


# --------------------------------------------------------------------------


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    server = Server(BASE_CONFIG, pg=args.pg, label="authlib-cc")
    ctx: dict[str, Any] = {"server": server}

    def cleanup(failed: bool) -> None:
        server.stop()
        if failed:
            server.dump_logs()
        server.cleanup()

    return suite.run(ctx, cleanup)


if __name__ == "__main__":
    sys.exit(main())
