#!/usr/bin/env python3
"""Third-party-client conformance: authlib's OAuth2Session, authorization code
flow with PKCE S256 for a public `ai-agent` client, against a live mandate.

The person at the browser is played over plain HTTP (harness.UserAgent: a
requests session that parses the login and consent forms with html.parser and
submits them with their hidden inputs). authlib builds the authorization URL
(its own S256 challenge), exchanges the code with the verifier and refreshes;
joserfc verifies every access token against the served JWKS.

    python authlib_code_flow.py [--pg]     (through conformance/run.sh)

`--pg` stores in a fresh PostgreSQL database under $MANDATE_TEST_PG.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from harness import (
    BASE_CONFIG, FILES, HTTP_TIMEOUT_SECS, INVOICES, CheckFailed, Server, Suite, UserAgent,
    authorize_url, check_user_token_claims, expect, expect_eq, free_port, get_json,
    need, parse_args, pkce_pair, short, single_params, token_error, verify_access_token,
)

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
CLIENT_NAME = "Invoice Helper (authlib)"
SCOPE = "invoices:read"

suite = Suite("authlib-code-flow")


def new_session(ctx: dict[str, Any]) -> OAuth2Session:
    """authlib's client for the public client: PKCE S256, no client secret
    (`token_endpoint_auth_method='none'` sends client_id in the body)."""
    s = OAuth2Session(
        client_id=ctx["client_id"],
        redirect_uri=ctx["redirect_uri"],
        scope=SCOPE,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )

    def capture(resp: requests.Response) -> requests.Response:
        ctx["last_token_response"] = resp
        return resp

    s.register_compliance_hook("access_token_response", capture)
    s.register_compliance_hook("refresh_token_response", capture)
    return s


def token_post(ctx: dict[str, Any], **form: str) -> requests.Response:
    return requests.post(ctx["metadata"]["token_endpoint"], data=form, timeout=HTTP_TIMEOUT_SECS)


# --------------------------------------------------------------------------
# Setup


@suite.check("server starts; CLI creates user alice and a public ai-agent client")
def c_setup(ctx: dict[str, Any]) -> None:
    server: Server = ctx["server"]
    server.start()
    ctx["issuer"] = server.issuer
    user = server.create_user(USERNAME, PASSWORD)
    expect_eq(user.get("username"), USERNAME, "user create --json username")
    # Nothing listens here: the redirect is caught, never followed.
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    client = server.create_client(
        "--name", CLIENT_NAME, "--public", "--redirect-uri", redirect_uri,
        "--resource", INVOICES, "--resource", FILES, "--scope", SCOPE, "--scope", "files:read",
    )
    expect("client_secret" not in client or client["client_secret"] in (None, ""),
           f"a public client got a secret: {sorted(client)}")
    ctx["client_id"] = client["client_id"]
    ctx["redirect_uri"] = redirect_uri
    ctx["ua"] = UserAgent(server.issuer)


@suite.check("metadata: both well-known paths, code flow, PKCE S256, iss parameter, registration, CIMD")
def c_metadata(ctx: dict[str, Any]) -> None:
    need(ctx, "issuer")
    a = get_json(ctx["issuer"] + "/.well-known/oauth-authorization-server")
    b = get_json(ctx["issuer"] + "/.well-known/openid-configuration")
    expect(a == b, f"the two documents differ: {a!r} vs {b!r}")
    expect_eq(a.get("issuer"), ctx["issuer"], "issuer")
    base = ctx["issuer"] + "/"
    for k in ("authorization_endpoint", "token_endpoint", "registration_endpoint", "jwks_uri"):
        v = a.get(k)
        expect(isinstance(v, str) and v.startswith(base), f"{k} {v!r} is not under {base!r}")
    expect_eq(a.get("response_types_supported"), ["code"], "response_types_supported")
    expect_eq(a.get("code_challenge_methods_supported"), ["S256"], "code_challenge_methods_supported")
    expect_eq(a.get("authorization_response_iss_parameter_supported"), True,
              "authorization_response_iss_parameter_supported")
    expect_eq(a.get("client_id_metadata_document_supported"), True, "client_id_metadata_document_supported")
    grants = a.get("grant_types_supported") or []
    for g in ("authorization_code", "refresh_token"):
        expect(g in grants, f"{g} not in grant_types_supported {grants!r}")
    methods = a.get("token_endpoint_auth_methods_supported") or []
    expect("none" in methods, f"none not in token_endpoint_auth_methods_supported {methods!r}")
    ctx["metadata"] = a
    ctx["jwks"] = get_json(a["jwks_uri"])


# --------------------------------------------------------------------------
# The flow


@suite.check("authlib builds the authorization URL with an S256 challenge of its verifier")
def c_authorization_url(ctx: dict[str, Any]) -> None:
    need(ctx, "metadata")
    s = new_session(ctx)
    verifier = generate_token(48)
    url, state = s.create_authorization_url(
        ctx["metadata"]["authorization_endpoint"], code_verifier=verifier, resource=INVOICES)
    q = single_params(url)
    expect_eq(q.get("code_challenge_method"), "S256", "code_challenge_method")
    expect(q.get("code_challenge") and q["code_challenge"] != verifier, f"code_challenge {q.get('code_challenge')!r}")
    expect_eq(q.get("response_type"), "code", "response_type")
    expect_eq(q.get("resource"), INVOICES, "resource")
    ctx.update(session=s, verifier=verifier, state=state, auth_url=url)


@suite.check("login: a wrong password shows the login page again with an error message")
def c_wrong_password(ctx: dict[str, Any]) -> None:
    need(ctx, "auth_url")
    page = ctx["ua"].login_attempt(ctx["auth_url"], USERNAME, "not-the-password")
    expect(400 <= page.status < 500, f"status {page.status} (a refused sign-in is a 4xx page)")
    expect(re.search(r"incorrect|wrong|invalid|does not match|did not match|failed", page.text, re.I),
           f"no error message on the page: {short(page.text)}")
    page.form_with_button("Sign in")  # the form is offered again
    expect("not-the-password" not in page.body, "the wrong password is echoed into the page")


@suite.check("login + consent over HTTP: consent names client, AI agent, resource and scope description")
def c_flow(ctx: dict[str, Any]) -> None:
    need(ctx, "auth_url")
    res = ctx["ua"].authorize(ctx["auth_url"], username=USERNAME, password=PASSWORD,
                              expect_login=True, expect_consent=True)
    ctx["auth_result"] = res
    page = res.consent_page
    assert page is not None
    for text in (CLIENT_NAME, "AI agent", "Invoices API"):
        expect(text in page.text, f"consent page does not show {text!r}: {short(page.text)}")
    boxes = page.checkbox_labels(page.form_with_button("Allow"))
    expect_eq(boxes.get("Read your invoices"), (SCOPE, True), "checkbox labelled 'Read your invoices' (value, ticked)")
    page.form_with_button("Deny")


@suite.check("Allow redirects (303) to the redirect_uri with code, state and iss = issuer (RFC 9207)")
def c_redirect(ctx: dict[str, Any]) -> None:
    need(ctx, "auth_result")
    res = ctx["auth_result"]
    last = res.steps[-1]
    expect_eq((last.method, urlsplit(last.url).path, last.status), ("POST", "/consent", 303), "the Allow response")
    expect(res.redirect.split("?")[0] == ctx["redirect_uri"], f"redirected to {res.redirect}")
    p = res.params
    expect(p.get("code"), f"no code in {p!r}")
    expect_eq(p.get("state"), ctx["state"], "state")
    expect_eq(p.get("iss"), ctx["issuer"], "iss")
    expect("error" not in p, f"error in the success redirect: {p!r}")


@suite.check("authlib fetch_token(authorization_response, code_verifier) gets access + refresh token")
def c_fetch_token(ctx: dict[str, Any]) -> None:
    need(ctx, "auth_result", "session")
    before = int(time.time())
    token = ctx["session"].fetch_token(
        ctx["metadata"]["token_endpoint"],
        authorization_response=ctx["auth_result"].redirect,
        state=ctx["state"],
        code_verifier=ctx["verifier"],
        resource=INVOICES,
        timeout=HTTP_TIMEOUT_SECS,
    )
    resp = ctx["last_token_response"]
    expect_eq(resp.headers.get("Cache-Control"), "no-store", "Cache-Control of the token response")
    expect_eq(str(token.get("token_type", "")).lower(), "bearer", "token_type")
    expect(isinstance(token.get("expires_in"), int) and 0 < token["expires_in"] <= 3600,
           f"expires_in {token.get('expires_in')!r}")
    expect_eq(token.get("scope"), SCOPE, "scope")
    expect(isinstance(token.get("refresh_token"), str) and len(token["refresh_token"]) >= 32,
           f"refresh_token {token.get('refresh_token')!r}")
    expect("id_token" not in token, "an OAuth 2.0 server issued an id_token")
    ctx.update(token=token, issued_after=before)


@suite.check("access token: RFC 9068 JWT verifying against /jwks.json, sub/acr/amr/auth_time/act")
def c_claims(ctx: dict[str, Any]) -> None:
    need(ctx, "token", "jwks")
    claims = verify_access_token(ctx["token"]["access_token"], ctx["jwks"], ctx["issuer"], INVOICES)
    check_user_token_claims(claims, username=USERNAME, client_id=ctx["client_id"], scope=SCOPE,
                            since=ctx["issued_after"])
    ctx["claims"] = claims


@suite.check("authlib refresh_token() rotates: a new refresh token and a new access token")
def c_refresh(ctx: dict[str, Any]) -> None:
    need(ctx, "token")
    old = ctx["token"]
    new = ctx["session"].refresh_token(ctx["metadata"]["token_endpoint"], refresh_token=old["refresh_token"],
                                       resource=INVOICES, timeout=HTTP_TIMEOUT_SECS)
    expect(isinstance(new.get("refresh_token"), str) and new["refresh_token"],
           f"no refresh_token in the refresh response: {sorted(new)}")
    expect(new["refresh_token"] != old["refresh_token"], "the refresh token did not rotate")
    expect(new.get("access_token") and new["access_token"] != old["access_token"], "no new access token")
    expect_eq(new.get("scope"), SCOPE, "scope after refresh")
    claims = verify_access_token(new["access_token"], ctx["jwks"], ctx["issuer"], INVOICES)
    check_user_token_claims(claims, username=USERNAME, client_id=ctx["client_id"], scope=SCOPE)
    expect(claims["jti"] != ctx["claims"]["jti"], "the refreshed token has the old jti")
    expect_eq(claims["auth_time"], ctx["claims"]["auth_time"], "auth_time carried through the refresh")
    ctx["refreshed"] = new


@suite.check("a second authorize for the same client and scopes skips login and consent (remembered)")
def c_remembered(ctx: dict[str, Any]) -> None:
    need(ctx, "token")
    verifier, challenge = pkce_pair()
    url = authorize_url(ctx["metadata"], response_type="code", client_id=ctx["client_id"],
                        redirect_uri=ctx["redirect_uri"], scope=SCOPE, state="second",
                        code_challenge=challenge, code_challenge_method="S256", resource=INVOICES)
    res = ctx["ua"].authorize(url, username=USERNAME, password=PASSWORD,
                              expect_login=False, expect_consent=False)
    expect_eq(res.params.get("state"), "second", "state")
    expect_eq(res.params.get("iss"), ctx["issuer"], "iss")
    expect(res.params.get("code"), f"no code: {res.params!r}")
    r = token_post(ctx, grant_type="authorization_code", code=res.params["code"], redirect_uri=ctx["redirect_uri"],
                   code_verifier=verifier, client_id=ctx["client_id"], resource=INVOICES)
    expect_eq(r.status_code, 200, f"code exchange ({short(r.text)})")


@suite.check("prompt=consent asks again; Deny redirects with error=access_denied, state and iss")
def c_prompt_consent_deny(ctx: dict[str, Any]) -> None:
    need(ctx, "token")
    _, challenge = pkce_pair()
    url = authorize_url(ctx["metadata"], response_type="code", client_id=ctx["client_id"],
                        redirect_uri=ctx["redirect_uri"], scope=SCOPE, state="third", prompt="consent",
                        code_challenge=challenge, code_challenge_method="S256", resource=INVOICES)
    res = ctx["ua"].authorize(url, username=USERNAME, password=PASSWORD, decision="Deny",
                              expect_login=False, expect_consent=True)
    expect(res.redirect.split("?")[0] == ctx["redirect_uri"], f"redirected to {res.redirect}")
    expect_eq(res.params.get("error"), "access_denied", "error")
    expect_eq(res.params.get("state"), "third", "state")
    expect_eq(res.params.get("iss"), ctx["issuer"], "iss")
    expect("code" not in res.params, f"a code came with access_denied: {res.params!r}")


@suite.check("a wrong code_verifier at the token endpoint is invalid_grant (PKCE)")
def c_wrong_verifier(ctx: dict[str, Any]) -> None:
    need(ctx, "token")
    _, challenge = pkce_pair()
    url = authorize_url(ctx["metadata"], response_type="code", client_id=ctx["client_id"],
                        redirect_uri=ctx["redirect_uri"], scope=SCOPE, state="fourth",
                        code_challenge=challenge, code_challenge_method="S256", resource=INVOICES)
    res = ctx["ua"].authorize(url, username=USERNAME, password=PASSWORD, expect_consent=False)
    expect(res.params.get("code"), f"no code: {res.params!r}")
    other_verifier, _ = pkce_pair()
    r = token_post(ctx, grant_type="authorization_code", code=res.params["code"], redirect_uri=ctx["redirect_uri"],
                   code_verifier=other_verifier, client_id=ctx["client_id"], resource=INVOICES)
    expect_eq(r.status_code, 400, f"status ({short(r.text)})")
    expect_eq(token_error(r), "invalid_grant", "error")


@suite.check("authorize without code_challenge redirects with error=invalid_request, state and iss")
def c_no_pkce(ctx: dict[str, Any]) -> None:
    need(ctx, "metadata")
    url = authorize_url(ctx["metadata"], response_type="code", client_id=ctx["client_id"],
                        redirect_uri=ctx["redirect_uri"], scope=SCOPE, state="nopkce", resource=INVOICES)
    res = ctx["ua"].authorize(url, username=USERNAME, password=PASSWORD)
    expect_eq(res.params.get("error"), "invalid_request", "error")
    expect_eq(res.params.get("state"), "nopkce", "state")
    expect_eq(res.params.get("iss"), ctx["issuer"], "iss")
    expect("code" not in res.params, f"a code without PKCE: {res.params!r}")


@suite.check("unknown client_id and unregistered redirect_uri: HTML error page 400, no redirect")
def c_error_pages(ctx: dict[str, Any]) -> None:
    need(ctx, "metadata")
    _, challenge = pkce_pair()
    cases = {
        "unknown client_id": dict(client_id="no-such-client", redirect_uri=ctx["redirect_uri"]),
        "unregistered redirect_uri": dict(client_id=ctx["client_id"],
                                          redirect_uri="http://127.0.0.1:9/evil"),
    }
    for what, params in cases.items():
        url = authorize_url(ctx["metadata"], response_type="code", scope=SCOPE, state="x",
                            code_challenge=challenge, code_challenge_method="S256", **params)
        r = ctx["ua"].get(url)
        expect_eq(r.status_code, 400, f"{what}: status")
        expect("Location" not in r.headers, f"{what}: redirects to {r.headers.get('Location')!r}")
        ctype = r.headers.get("Content-Type", "")
        expect(ctype.startswith("text/html"), f"{what}: Content-Type {ctype!r}")
        expect('href="http://127.0.0.1:9/evil' not in r.text, f"{what}: the page links to the unregistered redirect_uri")


@suite.check("refresh token reuse: the used refresh token is invalid_grant")
def c_reuse(ctx: dict[str, Any]) -> None:
    need(ctx, "refreshed")
    r = token_post(ctx, grant_type="refresh_token", refresh_token=ctx["token"]["refresh_token"],
                   client_id=ctx["client_id"], resource=INVOICES)
    expect_eq(r.status_code, 400, f"status ({short(r.text)})")
    expect_eq(token_error(r), "invalid_grant", "error")
    # authlib reports the same error as an OAuthError.
    try:
        ctx["session"].refresh_token(ctx["metadata"]["token_endpoint"], refresh_token=ctx["token"]["refresh_token"],
                                     resource=INVOICES, timeout=HTTP_TIMEOUT_SECS)
    except OAuthError as e:
        expect_eq(e.error, "invalid_grant", "authlib OAuthError.error")
    else:
        raise CheckFailed("authlib refreshed with a used refresh token")


@suite.check("refresh token reuse revokes the grant: the newest refresh token is invalid_grant too")
def c_reuse_revokes(ctx: dict[str, Any]) -> None:
    need(ctx, "refreshed")
    r = token_post(ctx, grant_type="refresh_token", refresh_token=ctx["refreshed"]["refresh_token"],
                   client_id=ctx["client_id"], resource=INVOICES)
    expect_eq(r.status_code, 400, f"status ({short(r.text)})")
    expect_eq(token_error(r), "invalid_grant", "error")


@suite.check("the code is single-use: a second exchange is invalid_grant and revokes what the first issued")
def c_code_replay(ctx: dict[str, Any]) -> None:
    # Its own client, so that what the replay revokes cannot be confused with
    # the refresh-token checks above (nor hide their outcome).
    need(ctx, "metadata")
    client = ctx["server"].create_client(
        "--name", "Replay check", "--public", "--redirect-uri", ctx["redirect_uri"],
        "--resource", INVOICES, "--scope", SCOPE)
    verifier, challenge = pkce_pair()
    url = authorize_url(ctx["metadata"], response_type="code", client_id=client["client_id"],
                        redirect_uri=ctx["redirect_uri"], scope=SCOPE, state="replay",
                        code_challenge=challenge, code_challenge_method="S256", resource=INVOICES)
    res = ctx["ua"].authorize(url, username=USERNAME, password=PASSWORD, expect_consent=True)
    form = dict(grant_type="authorization_code", code=res.params.get("code", ""), redirect_uri=ctx["redirect_uri"],
                code_verifier=verifier, client_id=client["client_id"], resource=INVOICES)
    first = token_post(ctx, **form)
    expect_eq(first.status_code, 200, f"first exchange ({short(first.text)})")
    rt = first.json().get("refresh_token")
    expect(rt, f"the first exchange returned no refresh_token: {sorted(first.json())}")
    again = token_post(ctx, **form)
    expect_eq((again.status_code, token_error(again)), (400, "invalid_grant"), f"replay ({short(again.text)})")
    # SPEC §4: a second use revokes every token issued from the first.
    r = token_post(ctx, grant_type="refresh_token", refresh_token=rt, client_id=client["client_id"],
                   resource=INVOICES)
    expect_eq((r.status_code, token_error(r)), (400, "invalid_grant"),
              f"refresh with the refresh token of the replayed code ({short(r.text)})")


@suite.check("mandate audit verify: the audit chain of this run is intact")
def c_audit(ctx: dict[str, Any]) -> None:
    need(ctx, "issuer")
    r = ctx["server"].cli("audit", "verify")
    expect_eq(r.returncode, 0, f"audit verify exit ({short(r.stdout + r.stderr)})")


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    server = Server(BASE_CONFIG, pg=args.pg, label="authlib-code")
    ctx: dict[str, Any] = {"server": server}

    def cleanup(failed: bool) -> None:
        server.stop()
        if failed:
            server.dump_logs()
        server.cleanup()

    return suite.run(ctx, cleanup)


if __name__ == "__main__":
    sys.exit(main())
