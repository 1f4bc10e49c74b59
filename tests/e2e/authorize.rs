//! The browser flow over plain HTTP (SPEC §4): /authorize, login, consent,
//! the code exchange and refresh, and every refusal. The real-browser suite
//! (Playwright + Chromium) lives in conformance/.

use serde_json::Value;

use crate::both;
use crate::helpers::{assert_error, spawn_app, verify, Env, TestApp};

const API: &str = "https://api.example.com";
const FILES: &str = "https://files.example.com";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A browser: a cookie jar, no automatic redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {}", r.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// The value of hidden input `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

fn query(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn authorize_url(app: &TestApp, client_id: &str, extra: &str) -> String {
    format!(
        "{}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&state=xyz&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        app.base,
        urlencode(REDIRECT)
    )
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A public AI-agent client for the code flow.
pub fn public_client(env: &Env) -> String {
    let v = env.cli_json(&[
        "client",
        "create",
        "--name",
        "Travel agent",
        "--public",
        "--redirect-uri",
        REDIRECT,
        "--resource",
        API,
        "--resource",
        FILES,
        "--scope",
        "invoices:read",
        "--scope",
        "files:read",
        "--json",
    ]);
    v["client_id"].as_str().unwrap().to_string()
}

/// Signs in on the login page `login_url`; returns the response to the POST.
async fn sign_in(
    b: &reqwest::Client,
    app: &TestApp,
    login_url: &str,
    user: &str,
    pass: &str,
) -> reqwest::Response {
    let page = b
        .get(format!("{}{login_url}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<label for="username">Username</label>"#),
        "{html}"
    );
    assert!(html.contains(r#"<label for="password">Password</label>"#));
    assert!(html.contains(">Sign in</button>"));
    b.post(app.url("/login"))
        .form(&[
            ("csrf", hidden(&html, "csrf")),
            ("req", hidden(&html, "req")),
            ("username", user.into()),
            ("password", pass.into()),
        ])
        .send()
        .await
        .unwrap()
}

/// Runs the flow to the code: authorize, sign in, allow. Returns the redirect query.
pub async fn get_code(
    b: &reqwest::Client,
    app: &TestApp,
    client_id: &str,
    extra: &str,
) -> std::collections::HashMap<String, String> {
    let r = b
        .get(authorize_url(app, client_id, extra))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let mut to = location(&r);
    if to.starts_with("/login") {
        let r = sign_in(b, app, &to, "alice", "correct horse battery").await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        to = location(&r);
    }
    if to.starts_with("/consent") {
        let html = b
            .get(format!("{}{to}", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut form: Vec<(String, String)> = vec![
            ("csrf".into(), hidden(&html, "csrf")),
            ("req".into(), hidden(&html, "req")),
            ("decision".into(), "allow".into()),
            ("remember".into(), "yes".into()),
        ];
        for s in ["invoices:read", "files:read"] {
            if html.contains(&format!("value=\"{s}\"")) {
                form.push(("scope".into(), s.into()));
            }
        }
        let r = b
            .post(app.url("/consent"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        to = location(&r);
    }
    assert!(to.starts_with(REDIRECT), "{to}");
    query(&to)
}

pub async fn exchange(
    app: &TestApp,
    client_id: &str,
    code: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", client_id),
    ];
    form.extend_from_slice(extra);
    app.http
        .post(app.url("/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

both!(
    /// The whole flow: authorize → login → consent → code → token → refresh.
    code_flow_end_to_end, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    env.create_user("alice", "correct horse battery", &[]);
    let client_id = public_client(&env);
    let b = browser();

    // Step 1 - authorize without a session: to the login page
    let r = b.get(authorize_url(&app, &client_id, "&scope=invoices:read+files:read")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let login = location(&r);
    assert!(login.starts_with("/login?req="), "{login}");

    // Step 2 - a wrong password is refused on the page
    let r = sign_in(&b, &app, &login, "alice", "wrong password").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Incorrect username or password."));

    // Step 3 - sign in: on to the consent page
    let r = sign_in(&b, &app, &login, "alice", "correct horse battery").await;
    assert_eq!(r.status(), 303);
    let consent = location(&r);
    assert!(consent.starts_with("/consent?req="), "{consent}");
    let page = b.get(format!("{}{consent}", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    for text in ["Travel agent", "AI agent", "Invoices API", "Files API", "Read your invoices", "Read your files", ">Allow</button>", ">Deny</button>"] {
        assert!(html.contains(text), "consent page lacks {text}");
    }

    // Step 4 - allow only invoices:read (untick files:read)
    let r = b.post(app.url("/consent")).form(&[
        ("csrf", hidden(&html, "csrf")), ("req", hidden(&html, "req")), ("decision", "allow".into()),
        ("scope", "invoices:read".into()), ("remember", "yes".into()),
    ]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let q = query(&location(&r));
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], app.base);
    let code = q["code"].clone();

    // Step 5 - exchange the code
    let r = exchange(&app, &client_id, &code, &[]).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let (_, claims) = verify(body["access_token"].as_str().unwrap(), &app.jwks().await, &app.base, API);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "invoices:read");
    assert_eq!(claims["acr"], "urn:mandate:acr:pwd");
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert!(claims["auth_time"].is_i64());
    assert_eq!(claims["act"], serde_json::json!({"sub": client_id, "client_type": "ai-agent"}));
    let refresh = body["refresh_token"].as_str().unwrap().to_string();

    // Step 6 - refresh rotates; the old refresh token then fails and revokes the grant
    let r = app.http.post(app.url("/token")).form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &client_id)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body2: Value = r.json().await.unwrap();
    let refresh2 = body2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh);
    // Widening on refresh is refused.
    let r = app.http.post(app.url("/token")).form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh2), ("client_id", &client_id), ("scope", "invoices:read files:read"), ("resource", API)]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = app.http.post(app.url("/token")).form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &client_id)]).send().await.unwrap();
    assert_error(r, 400, "invalid_grant", "the refresh token was already used; its grant and every token from it are revoked").await;
    let revoked: i64 = mandate::on_db!(&app.state.db, |p| sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE revoked_at IS NOT NULL").fetch_one(p).await.unwrap());
    assert!(revoked >= 2, "every token of the grant is revoked");

    // Step 7 - a second authorize is covered by the remembered consent: straight to the code
    let r = b.get(authorize_url(&app, &client_id, "&scope=invoices:read")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with(REDIRECT), "remembered consent skips the page");
    // prompt=consent asks again; asking for more asks again.
    let r = b.get(authorize_url(&app, &client_id, "&scope=invoices:read&prompt=consent")).send().await.unwrap();
    assert!(location(&r).starts_with("/consent"));
    let r = b.get(authorize_url(&app, &client_id, "&scope=invoices:read+files:read")).send().await.unwrap();
    assert!(location(&r).starts_with("/consent"));

    let events: Vec<String> = env.audit_events().iter().map(|e| e["event"].as_str().unwrap().to_string()).collect();
    for kind in ["login", "consent", "token.issued", "token.refreshed", "grant.revoked", "token.denied"] {
        assert!(events.iter().any(|e| e == kind), "no {kind} event in {events:?}");
    }
    assert!(env.cli(&["audit", "verify"]).status.success());
    app.stop().await;
});

both!(
    /// A code is single-use; a second use fails and revokes the first's tokens.
    code_reuse_revokes, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    env.create_user("alice", "correct horse battery", &[]);
    let client_id = public_client(&env);
    let b = browser();
    let q = get_code(&b, &app, &client_id, "&scope=invoices:read").await;
    let r = exchange(&app, &client_id, &q["code"], &[]).await;
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.unwrap();
    let r = exchange(&app, &client_id, &q["code"], &[]).await;
    assert_error(r, 400, "invalid_grant", "the authorization code was already used; every token issued from it is revoked").await;
    let jti = verify(first["access_token"].as_str().unwrap(), &app.jwks().await, &app.base, API).1["jti"].as_str().unwrap().to_string();
    let revoked: Option<i64> = mandate::on_db!(&app.state.db, |p| sqlx::query_scalar("SELECT revoked_at FROM tokens WHERE jti = $1").bind(&jti).fetch_one(p).await.unwrap());
    assert!(revoked.is_some(), "the token from the first use is revoked");
    // Its refresh token is dead too.
    let r = app.http.post(app.url("/token")).form(&[("grant_type", "refresh_token"), ("refresh_token", first["refresh_token"].as_str().unwrap()), ("client_id", &client_id)]).send().await.unwrap();
    assert_error(r, 400, "invalid_grant", "the refresh token's grant has been revoked").await;
    app.stop().await;
});

both!(
    /// PKCE and redirect refusals: missing, plain, wrong verifier; a
    /// mismatched redirect URI never redirects.
    pkce_and_redirect_refusals, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    env.create_user("alice", "correct horse battery", &[]);
    let client_id = public_client(&env);
    let b = browser();
    let base = format!("{}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&state=s1&scope=invoices:read", app.base, urlencode(REDIRECT));
    for (extra, description) in [
        ("", "PKCE is required: send code_challenge with code_challenge_method=S256"),
        (&format!("&code_challenge={CHALLENGE}&code_challenge_method=plain")[..], "code_challenge_method plain is not allowed; use S256"),
        (&format!("&code_challenge={CHALLENGE}")[..], "code_challenge_method is required and must be S256"),
    ] {
        let r = b.get(format!("{base}{extra}")).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let q = query(&location(&r));
        assert_eq!(q["error"], "invalid_request");
        assert_eq!(q["error_description"], description);
        assert_eq!(q["state"], "s1");
        assert_eq!(q["iss"], app.base);
    }
    // An unregistered redirect URI or an unknown client: an error page, no redirect.
    for url in [
        authorize_url(&app, &client_id, "").replace(&urlencode(REDIRECT), &urlencode("https://evil.example.com/cb")),
        authorize_url(&app, "no-such-client", ""),
    ] {
        let r = b.get(url).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.headers().get("location").is_none(), "must never redirect");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    }
    // The loopback port may vary for a public client.
    let other_port = authorize_url(&app, &client_id, "&scope=invoices:read").replace(&urlencode(REDIRECT), &urlencode("http://127.0.0.1:4567/cb"));
    let r = b.get(other_port).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/login"));

    // A wrong verifier fails and spends the code.
    let q = get_code(&b, &app, &client_id, "&scope=invoices:read").await;
    let r = app.http.post(app.url("/token")).form(&[("grant_type", "authorization_code"), ("code", &q["code"]), ("redirect_uri", REDIRECT), ("code_verifier", &"x".repeat(43)), ("client_id", &client_id)]).send().await.unwrap();
    assert_error(r, 400, "invalid_grant", "PKCE verification failed: wrong code_verifier").await;
    let r = exchange(&app, &client_id, &q["code"], &[]).await;
    assert_eq!(r.status(), 400, "a failed attempt spends the code");
    // No verifier at all.
    let q = get_code(&b, &app, &client_id, "&scope=invoices:read").await;
    let r = app.http.post(app.url("/token")).form(&[("grant_type", "authorization_code"), ("code", &q["code"]), ("redirect_uri", REDIRECT), ("client_id", &client_id)]).send().await.unwrap();
    assert_error(r, 400, "invalid_request", "PKCE is required: send the code_verifier").await;
    app.stop().await;
});

both!(
    /// Consent without or with a wrong CSRF token changes nothing; Deny is access_denied.
    consent_csrf_and_deny, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    env.create_user("alice", "correct horse battery", &[]);
    let client_id = public_client(&env);
    let b = browser();
    let r = b.get(authorize_url(&app, &client_id, "&scope=invoices:read")).send().await.unwrap();
    let r = sign_in(&b, &app, &location(&r), "alice", "correct horse battery").await;
    let consent = location(&r);
    let html = b.get(format!("{}{consent}", app.base)).send().await.unwrap().text().await.unwrap();
    let req = hidden(&html, "req");
    for csrf in [None, Some("forged")] {
        let mut form = vec![("req", req.clone()), ("decision", "allow".into()), ("scope", "invoices:read".into())];
        if let Some(c) = csrf {
            form.push(("csrf", c.into()));
        }
        let r = b.post(app.url("/consent")).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("location").is_none());
    }
    assert_eq!(app.count("codes").await, 0, "no code without a valid CSRF token");
    let r = b.post(app.url("/consent")).form(&[("csrf", hidden(&html, "csrf")), ("req", req), ("decision", "deny".into())]).send().await.unwrap();
    let q = query(&location(&r));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], app.base);
    assert_eq!(app.count("codes").await, 0);
    app.stop().await;
});

both!(
    /// prompt=none answers login_required / consent_required without a page.
    prompt_none, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    env.create_user("alice", "correct horse battery", &[]);
    let client_id = public_client(&env);
    let b = browser();
    let r = b.get(authorize_url(&app, &client_id, "&scope=invoices:read&prompt=none")).send().await.unwrap();
    assert_eq!(query(&location(&r))["error"], "login_required");
    let r = b.get(authorize_url(&app, &client_id, "&scope=invoices:read")).send().await.unwrap();
    sign_in(&b, &app, &location(&r), "alice", "correct horse battery").await;
    let r = b.get(authorize_url(&app, &client_id, "&scope=invoices:read&prompt=none")).send().await.unwrap();
    assert_eq!(query(&location(&r))["error"], "consent_required");
    app.stop().await;
});

both!(
    /// Failed sign-ins are throttled per account and address with a clear
    /// message and an audit event; a disabled user cannot sign in; the lock
    /// ends (no permanent lockout).
    login_throttling_and_disabled_users, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    env.create_user("alice", "correct horse battery", &[]);
    env.create_user("bob", "another long password", &[]);
    let b = browser();
    for i in 0..5 {
        let r = sign_in(&b, &app, "/login", "alice", "wrong password").await;
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    // Now locked, even with the right password.
    let r = sign_in(&b, &app, "/login", "alice", "correct horse battery").await;
    assert_eq!(r.status(), 429);
    let html = r.text().await.unwrap();
    assert!(html.contains("Too many failed sign-in attempts. Try again in ") && html.contains(" seconds."), "{html}");
    // Another account from the same address is not locked by alice's failures.
    let r = sign_in(&b, &app, "/login", "bob", "another long password").await;
    assert_eq!(r.status(), 303);
    // The lock ends by itself.
    app.state.clock.advance(31);
    let r = sign_in(&browser(), &app, "/login", "alice", "correct horse battery").await;
    assert_eq!(r.status(), 303, "the lock is temporary");

    // A disabled user cannot sign in.
    assert!(env.cli(&["user", "disable", "bob"]).status.success());
    let r = sign_in(&browser(), &app, "/login", "bob", "another long password").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("This account is disabled."));

    let events = env.audit_events();
    let logins: Vec<&Value> = events.iter().filter(|e| e["event"] == "login").collect();
    assert!(logins.iter().any(|e| e["outcome"] == "failure" && e["reason"].as_str().unwrap().starts_with("throttled")));
    assert!(logins.iter().any(|e| e["outcome"] == "success" && e["user"] == "alice"));
    assert!(logins.iter().all(|e| e["ip"] == "127.0.0.1"));
    assert!(!serde_json::to_string(&events).unwrap().contains("correct horse"), "a password reached the audit trail");
    app.stop().await;
});

both!(
    /// The session id changes at sign-in, is stored only as a hash, and the
    /// cookie is HttpOnly + SameSite=Lax; sign-out ends it.
    session_fixation_and_logout, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    env.create_user("alice", "correct horse battery", &[]);
    let b = browser();
    let page = b.get(app.url("/login")).send().await.unwrap();
    let before = page.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(before.contains("HttpOnly") && before.contains("SameSite=Lax") && before.contains("Path=/"), "{before}");
    let html = page.text().await.unwrap();
    let r = b.post(app.url("/login")).form(&[("csrf", hidden(&html, "csrf")), ("req", String::new()), ("username", "alice".into()), ("password", "correct horse battery".into())]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/account");
    let after = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let id = |c: &str| c.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
    assert_ne!(id(&before), id(&after), "the session id changes at sign-in");
    let raw = id(&after);
    let stored: i64 = mandate::on_db!(&app.state.db, |p| sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE id_hash = $1").bind(mandate::secret::hash(&raw)).fetch_one(p).await.unwrap());
    assert_eq!(stored, 1);
    let plain: i64 = mandate::on_db!(&app.state.db, |p| sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE id_hash = $1").bind(&raw).fetch_one(p).await.unwrap());
    assert_eq!(plain, 0, "the raw session id is never stored");
    // The old (pre-login) session is gone.
    let old: i64 = mandate::on_db!(&app.state.db, |p| sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE id_hash = $1").bind(mandate::secret::hash(&id(&before))).fetch_one(p).await.unwrap());
    assert_eq!(old, 0);
    let account = b.get(app.url("/account")).send().await.unwrap();
    assert_eq!(account.status(), 200);
    let html = account.text().await.unwrap();
    assert!(html.contains("Connected agents"));
    // Sign-out without CSRF is refused; with it, the session ends.
    let r = b.post(app.url("/logout")).form(&[("csrf", "nope")]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = b.post(app.url("/logout")).form(&[("csrf", hidden(&html, "csrf"))]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = b.get(app.url("/account")).send().await.unwrap();
    assert_eq!(r.status(), 303, "signed out: /account asks to sign in");
    app.stop().await;
});

both!(
    /// A grant revoked on /account invalidates its refresh token at once.
    account_revokes_a_grant, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    env.create_user("alice", "correct horse battery", &[]);
    let client_id = public_client(&env);
    let b = browser();
    let q = get_code(&b, &app, &client_id, "&scope=invoices:read").await;
    let body: Value = exchange(&app, &client_id, &q["code"], &[]).await.json().await.unwrap();
    let html = b.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Travel agent") && html.contains(">Revoke</button>"), "{html}");
    let r = b.post(app.url("/account/grants/revoke")).form(&[("csrf", hidden(&html, "csrf")), ("grant_id", hidden(&html, "grant_id"))]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let r = app.http.post(app.url("/token")).form(&[("grant_type", "refresh_token"), ("refresh_token", body["refresh_token"].as_str().unwrap()), ("client_id", &client_id)]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let events = env.audit_events();
    assert!(events.iter().any(|e| e["event"] == "grant.revoked" && e["user"] == "alice"));
    // Remembered consent can be forgotten too: the next authorize asks again.
    let html = b.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    let r = b.post(app.url("/account/consents/forget")).form(&[("csrf", hidden(&html, "csrf")), ("client_id", client_id.clone()), ("resource", API.into())]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let r = b.get(authorize_url(&app, &client_id, "&scope=invoices:read")).send().await.unwrap();
    assert!(location(&r).starts_with("/consent"));
    app.stop().await;
});

/// A session started on one instance continues on another sharing PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_continues_on_another_instance() {
    if crate::helpers::skip_postgres() {
        return;
    }
    let (env, one) = spawn_app(crate::helpers::Backend::Postgres).await;
    let two = crate::helpers::start(&env).await;
    env.create_user("alice", "correct horse battery", &[]);
    let client_id = public_client(&env);
    let b = browser();
    // Authorize and sign in at instance one...
    let r = b
        .get(authorize_url(&one, &client_id, "&scope=invoices:read"))
        .send()
        .await
        .unwrap();
    let r = sign_in(&b, &one, &location(&r), "alice", "correct horse battery").await;
    let consent = location(&r);
    // ...the cookie is host-scoped (127.0.0.1) so the same browser reaches instance two: consent there.
    let page = b
        .get(format!("{}{consent}", two.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "instance two knows the session");
    let html = page.text().await.unwrap();
    let r = b
        .post(two.url("/consent"))
        .form(&[
            ("csrf", hidden(&html, "csrf")),
            ("req", hidden(&html, "req")),
            ("decision", "allow".into()),
            ("scope", "invoices:read".into()),
        ])
        .send()
        .await
        .unwrap();
    let q = query(&location(&r));
    // The code issued at two redeems at one.
    let r = exchange(&one, &client_id, &q["code"], &[]).await;
    assert_eq!(r.status(), 200);
    two.stop().await;
    one.stop().await;
}

both!(
    /// A client registered at /register (RFC 7591, public, as MCP clients
    /// register) completes the flow for any configured resource, and may not
    /// use client credentials.
    registered_client_completes_the_flow, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    env.create_user("alice", "correct horse battery", &[]);
    let r = app.http.post(app.url("/register")).json(&serde_json::json!({
        "client_name": "MCP Inspector",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "application_type": "native",
        "software_id": "inspector",
    })).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let reg: Value = r.json().await.unwrap();
    let client_id = reg["client_id"].as_str().unwrap().to_string();
    let b = browser();
    let q = get_code(&b, &app, &client_id, &format!("&scope=files:read&resource={}", urlencode(FILES))).await;
    let r = exchange(&app, &client_id, &q["code"], &[]).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let (_, claims) = verify(body["access_token"].as_str().unwrap(), &app.jwks().await, &app.base, FILES);
    assert_eq!(claims["act"], serde_json::json!({"sub": client_id, "client_type": "ai-agent"}));
    let r = app.http.post(app.url("/token")).form(&[("grant_type", "client_credentials"), ("client_id", client_id.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
});
