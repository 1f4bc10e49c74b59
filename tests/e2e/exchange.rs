//! Token exchange (SPEC §5), introspection and revocation: chains of two and
//! three hops with real processes' HTTP, every refusal, cascade revocation,
//! and the race between a revocation and an exchange.

use serde_json::{json, Value};

use crate::both;
use crate::helpers::{assert_error, start, verify, Backend, Env, TestApp, CONFIG};

const API: &str = "https://api.example.com";
const FILES: &str = "https://files.example.com";
const REPORTS: &str = "https://reports.example.com";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

/// CONFIG plus a third hop and a chain limit of 2 actors.
fn config() -> String {
    format!(
        "[tokens]\nmax_delegation_depth = 2\n{CONFIG}\n[[resources]]\nid = \"{REPORTS}\"\nname = \"Reports API\"\n  [[resources.scopes]]\n  name = \"reports:read\"\n  description = \"Read your reports\"\n"
    )
}

/// The hops: `agent` (client credentials at the root), `invoices` (the API
/// that owns API and may exchange to FILES), `files` (owns FILES, may
/// exchange to REPORTS), `reports` (owns REPORTS, may exchange to API: a
/// third hop that the depth limit refuses), `other` (owns nothing).
struct Hops {
    agent: (String, String),
    invoices: (String, String),
    files: (String, String),
    reports: (String, String),
    other: (String, String),
}

fn hops(env: &Env) -> Hops {
    let agent = env.create_client(&[
        "--resource",
        API,
        "--resource",
        FILES,
        "--resource",
        REPORTS,
        "--scope",
        "invoices:read",
        "--scope",
        "files:read",
        "--scope",
        "reports:read",
    ]);
    let exchanger = |owns: &str, to: &str| {
        env.create_client(&[
            "--client-type",
            "service",
            "--grant",
            "token-exchange",
            "--owns-resource",
            owns,
            "--exchange-to",
            to,
        ])
    };
    Hops {
        agent,
        invoices: exchanger(API, FILES),
        files: exchanger(FILES, REPORTS),
        reports: exchanger(REPORTS, API),
        other: exchanger(REPORTS, FILES),
    }
}

async fn spawn(backend: Backend) -> (Env, TestApp, Hops) {
    let env = Env::new(backend, &config()).await;
    let app = start(&env).await;
    let h = hops(&env);
    (env, app, h)
}

async fn cc(app: &TestApp, c: &(String, String), resource: &str, scope: &str) -> String {
    let r = app
        .token_basic(
            &c.0,
            &c.1,
            &[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn exchange(
    app: &TestApp,
    c: &(String, String),
    subject: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", TE),
        ("subject_token", subject),
        ("subject_token_type", AT),
    ];
    form.extend_from_slice(extra);
    app.token_basic(&c.0, &c.1, &form).await
}

async fn introspect(app: &TestApp, c: &(String, String), token: &str) -> Value {
    let r = app
        .http
        .post(app.url("/introspect"))
        .basic_auth(&c.0, Some(&c.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().await.unwrap()
}

both!(
    /// Two and three hops: each token names the whole chain, outermost first,
    /// with every client_type; scopes narrow; exp never grows.
    chains_nest_act_and_narrow, |backend| async move {
    let (env, app, h) = spawn(backend).await;
    let jwks = app.jwks().await;
    let root = cc(&app, &h.agent, API, "invoices:read").await;
    let (_, root_claims) = verify(&root, &jwks, &app.base, API);

    // Hop 1: the invoices API exchanges for the files API.
    let r = exchange(&app, &h.invoices, &root, &[("resource", FILES)]).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["issued_token_type"], AT);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("refresh_token").is_none());
    let hop1 = body["access_token"].as_str().unwrap().to_string();
    let (_, c1) = verify(&hop1, &jwks, &app.base, FILES);
    assert_eq!(c1["sub"], h.agent.0.as_str(), "sub is kept");
    assert_eq!(c1["client_id"], h.invoices.0.as_str());
    assert_eq!(c1["client_type"], "service");
    assert_eq!(c1["scope"], "files:read", "root scopes ∩ the new audience's");
    assert_eq!(c1["act"], json!({"sub": h.invoices.0, "client_type": "service"}));
    assert!(c1["exp"].as_i64().unwrap() <= root_claims["exp"].as_i64().unwrap());

    // Hop 2, with `audience` instead of `resource`.
    let r = exchange(&app, &h.files, &hop1, &[("audience", REPORTS)]).await;
    assert_eq!(r.status(), 200);
    let hop2 = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let (_, c2) = verify(&hop2, &jwks, &app.base, REPORTS);
    assert_eq!(c2["act"], json!({"sub": h.files.0, "client_type": "service",
        "act": {"sub": h.invoices.0, "client_type": "service"}}));
    assert_eq!(c2["scope"], "reports:read");
    assert!(c2["exp"].as_i64().unwrap() <= c1["exp"].as_i64().unwrap());

    // Hop 3 would make three actors: the limit is two.
    let r = exchange(&app, &h.reports, &hop2, &[("resource", API)]).await;
    assert_error(r, 400, "invalid_request", "the delegation chain would be 3 actors long; the limit is 2").await;

    // Introspection: the owner of the audience sees the chain.
    let v = introspect(&app, &h.files, &hop1).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["act"], c1["act"]);
    for k in ["sub", "aud", "scope", "client_id", "client_type", "exp", "iat", "iss", "token_type"] {
        assert!(v.get(k).is_some(), "introspection lacks {k}: {v}");
    }
    assert_eq!(v["token_type"], "Bearer");
    // The holder sees its own token; anyone else sees exactly {"active": false}.
    assert_eq!(introspect(&app, &h.invoices, &hop1).await["active"], true);
    assert_eq!(introspect(&app, &h.other, &hop1).await, json!({"active": false}));
    assert_eq!(introspect(&app, &h.other, "garbage").await, json!({"active": false}));

    // The audit trail names each exchange with its chain and parent.
    let events = env.audit_events();
    let ex: Vec<&Value> = events.iter().filter(|e| e["event"] == "token.exchanged").collect();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[1]["actor_chain"], json!([h.files.0, h.invoices.0]));
    assert_eq!(ex[1]["parent_jti"], c1["jti"]);
    let denied = events.iter().find(|e| e["event"] == "token.denied" && e["reason"].as_str().unwrap().contains("3 actors")).unwrap();
    assert_eq!(denied["actor_chain"], json!([h.reports.0, h.files.0, h.invoices.0]), "a denied exchange names the chain it would have made");
    assert_eq!(denied["parent_jti"], c2["jti"]);
    app.stop().await;
});

both!(
    /// One test per refusal of SPEC §5.
    exchange_refusals, |backend| async move {
    let (_env, app, h) = spawn(backend).await;
    let root = cc(&app, &h.agent, API, "invoices:read").await;
    let files_token = cc(&app, &h.agent, FILES, "files:read").await;

    // A stolen token: the caller does not own its audience.
    let r = exchange(&app, &h.files, &root, &[("resource", REPORTS)]).await;
    assert_error(r, 400, "invalid_request", "this client does not own the subject token's audience `https://api.example.com`").await;
    // An audience the caller may not exchange to.
    let r = exchange(&app, &h.invoices, &root, &[("resource", REPORTS)]).await;
    assert_error(r, 400, "invalid_target", "this client may not exchange tokens to `https://reports.example.com`").await;
    let r = exchange(&app, &h.invoices, &root, &[]).await;
    assert_error(r, 400, "invalid_target", "name the next hop with `resource` or `audience`").await;
    let r = exchange(&app, &h.invoices, &root, &[("resource", FILES), ("audience", REPORTS)]).await;
    assert_eq!(r.status(), 400);
    // Scope widening.
    let r = exchange(&app, &h.invoices, &root, &[("resource", FILES), ("scope", "files:read invoices:read")]).await;
    assert_error(r, 400, "invalid_scope", "scope `invoices:read` is not among what the root grant allows for `https://files.example.com`").await;
    // Forged and foreign subject tokens.
    let parts: Vec<&str> = root.split('.').collect();
    let b64 = |s: &str| { use base64::Engine; base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s) };
    let tampered = format!("{}.{}.{}", parts[0], b64(r#"{"sub":"admin"}"#), parts[2]);
    // The real token's own claims and jti with one scope more: the issuer
    // knows that jti, but not this token's hash, so it checks the signature.
    let mut widened: Value = {
        use base64::Engine;
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
    };
    widened["scope"] = json!("invoices:read files:read");
    let same_jti = format!("{}.{}.{}", parts[0], b64(&widened.to_string()), parts[2]);
    assert_eq!(introspect(&app, &h.invoices, &same_jti).await, json!({"active": false}));
    assert_eq!(introspect(&app, &h.invoices, &root).await["active"], true);
    let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"at+jwt"}"#), parts[1]);
    let hs = format!("{}.{}.{}", b64(r#"{"alg":"HS256","typ":"at+jwt"}"#), parts[1], parts[2]);
    let other_env = Env::new(Backend::Sqlite, &config()).await;
    let other_app = start(&other_env).await;
    let foreign_client = other_env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    let foreign = cc(&other_app, &foreign_client, API, "invoices:read").await;
    other_app.stop().await;
    for (token, description) in [
        (&tampered, "subject_token is not valid: the signature does not verify"),
        (&same_jti, "subject_token is not valid: the signature does not verify"),
        (&none, "subject_token is not valid: alg must be ES256"),
        (&hs, "subject_token is not valid: alg must be ES256"),
        (&foreign, "subject_token is not valid: signed by a key this issuer does not publish"),
        (&"not.a.jwt".to_string(), "subject_token is not valid: not a well-formed JWT"),
    ] {
        let r = exchange(&app, &h.invoices, token, &[("resource", FILES)]).await;
        assert_error(r, 400, "invalid_request", description).await;
    }
    // An actor_token of another client.
    let r = exchange(&app, &h.invoices, &root, &[("resource", FILES), ("actor_token", &files_token), ("actor_token_type", AT)]).await;
    assert_error(r, 400, "invalid_request", "actor_token was not issued to this client").await;
    // Expired.
    app.state.clock.advance(301);
    let r = exchange(&app, &h.invoices, &root, &[("resource", FILES)]).await;
    assert_error(r, 400, "invalid_request", "subject_token is not valid: expired").await;
    app.stop().await;
});

both!(
    /// There is no impersonation path: a subject token that carries an `act`
    /// chain is never exchanged into one without it, whatever the request says.
    act_chain_cannot_be_dropped, |backend| async move {
    let (_env, app, h) = spawn(backend).await;
    let root = cc(&app, &h.agent, API, "invoices:read").await;
    let hop1: Value = exchange(&app, &h.invoices, &root, &[("resource", FILES)]).await.json().await.unwrap();
    let hop1 = hop1["access_token"].as_str().unwrap().to_string();
    let own = cc(&app, &h.agent, FILES, "files:read").await; // a token without act, as a would-be actor
    for extra in [
        vec![("audience", REPORTS)],
        vec![("audience", REPORTS), ("requested_token_type", AT)],
        vec![("resource", REPORTS), ("scope", "reports:read")],
    ] {
        let r = exchange(&app, &h.files, &hop1, &extra).await;
        assert_eq!(r.status(), 200);
        let t = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
        let (_, c) = verify(&t, &app.jwks().await, &app.base, REPORTS);
        assert_eq!(c["act"]["act"]["sub"], h.invoices.0.as_str(), "the prior actor survives: {extra:?}");
    }
    let r = exchange(&app, &h.files, &hop1, &[("audience", REPORTS), ("actor_token", &own), ("actor_token_type", AT)]).await;
    assert_eq!(r.status(), 400, "someone else's token cannot stand in as the actor");
    app.stop().await;
});

both!(
    /// Revoking the root kills every descendant at once: inactive at
    /// /introspect and refused for further exchange. Someone else's token
    /// cannot be revoked (200, nothing changes).
    revocation_cascades, |backend| async move {
    let (env, app, h) = spawn(backend).await;
    let root = cc(&app, &h.agent, API, "invoices:read").await;
    let hop1 = exchange(&app, &h.invoices, &root, &[("resource", FILES)]).await.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let hop2 = exchange(&app, &h.files, &hop1, &[("resource", REPORTS)]).await.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&app, &h.reports, &hop2).await["active"], true);

    // Someone else's token: 200, and it stays active.
    let r = app.http.post(app.url("/revoke")).basic_auth(&h.other.0, Some(&h.other.1)).form(&[("token", root.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(introspect(&app, &h.invoices, &root).await["active"], true);
    // An unknown token: 200.
    let r = app.http.post(app.url("/revoke")).basic_auth(&h.agent.0, Some(&h.agent.1)).form(&[("token", "nope"), ("token_type_hint", "refresh_token")]).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The holder revokes the root.
    let r = app.http.post(app.url("/revoke")).basic_auth(&h.agent.0, Some(&h.agent.1)).form(&[("token", root.as_str()), ("token_type_hint", "access_token")]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(introspect(&app, &h.invoices, &root).await, json!({"active": false}));
    assert_eq!(introspect(&app, &h.files, &hop1).await, json!({"active": false}));
    assert_eq!(introspect(&app, &h.reports, &hop2).await, json!({"active": false}));
    let r = exchange(&app, &h.files, &hop1, &[("resource", REPORTS)]).await;
    // The whole tree was marked (and the use-time walk of the ancestors would refuse it anyway).
    assert_error(r, 400, "invalid_request", "subject_token is not active: the token has been revoked").await;
    let events = env.audit_events();
    assert!(events.iter().any(|e| e["event"] == "token.revoked" && e["outcome"] == "success"));
    assert!(events.iter().any(|e| e["event"] == "token.revoked" && e["outcome"] == "failure"));
    assert!(events.iter().any(|e| e["event"] == "token.introspected"));
    app.stop().await;
});

both!(
    /// The race: exchanges from a token while it is being revoked. Whatever
    /// the interleaving, after the revocation every descendant is inactive and
    /// none can be exchanged further.
    revocation_races_exchange, |backend| async move {
    let (_env, app, h) = spawn(backend).await;
    let root = cc(&app, &h.agent, API, "invoices:read").await;
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (http, url, c, root) = (app.http.clone(), app.url("/token"), h.invoices.clone(), root.clone());
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).basic_auth(&c.0, Some(&c.1)).form(&[("grant_type", TE), ("subject_token", root.as_str()), ("subject_token_type", AT), ("resource", FILES)]).send().await.unwrap();
            if r.status() == 200 { r.json::<Value>().await.unwrap()["access_token"].as_str().map(str::to_owned) } else { None }
        }));
    }
    tokio::task::yield_now().await;
    let r = app.http.post(app.url("/revoke")).basic_auth(&h.agent.0, Some(&h.agent.1)).form(&[("token", root.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut minted = Vec::new();
    for t in tasks {
        if let Some(token) = t.await.unwrap() {
            minted.push(token);
        }
    }
    for token in &minted {
        assert_eq!(introspect(&app, &h.files, token).await, json!({"active": false}), "a descendant outlived the revocation");
        let r = exchange(&app, &h.files, token, &[("resource", REPORTS)]).await;
        assert_eq!(r.status(), 400);
    }
    app.stop().await;
});

/// Two instances sharing PostgreSQL: revoke at one, inactive and refused at the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_holds_across_instances() {
    if crate::helpers::skip_postgres() {
        return;
    }
    let (env, one, h) = spawn(Backend::Postgres).await;
    let two = crate::helpers::start_instance_of(&env, &one).await;
    let root = cc(&one, &h.agent, API, "invoices:read").await;
    let hop1 = exchange(&two, &h.invoices, &root, &[("resource", FILES)])
        .await
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // The token minted at one is live at two, until one revokes its root.
    assert_eq!(introspect(&two, &h.files, &hop1).await["active"], true);
    let r = one
        .http
        .post(one.url("/revoke"))
        .basic_auth(&h.agent.0, Some(&h.agent.1))
        .form(&[("token", root.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        introspect(&two, &h.files, &hop1).await,
        json!({"active": false})
    );
    let r = exchange(&two, &h.files, &hop1, &[("resource", REPORTS)]).await;
    assert_eq!(r.status(), 400);
    two.stop().await;
    one.stop().await;
}

/// The same chain against the real `mandate serve` binary: clients made with
/// the CLI, tokens over HTTP, the nested `act` checked with an independent
/// JOSE library, then the root revoked and the tree dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_on_a_real_server_process() {
    let env = Env::new(Backend::Sqlite, &config()).await;
    let h = hops(&env);
    let port = crate::helpers::free_port();
    let server = env
        .serve_process(port, &[], &[], &env.dir().join("serve.log"))
        .await;
    let http = reqwest::Client::new();
    let token = |c: (String, String), form: Vec<(&'static str, String)>| {
        let (http, url) = (http.clone(), format!("{}/token", server.base));
        async move {
            let r = http
                .post(url)
                .basic_auth(&c.0, Some(&c.1))
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let root = token(
        h.agent.clone(),
        vec![
            ("grant_type", "client_credentials".into()),
            ("resource", API.into()),
            ("scope", "invoices:read".into()),
        ],
    )
    .await;
    let ex = |subject: String, to: &'static str| {
        vec![
            ("grant_type", TE.to_string()),
            ("subject_token", subject),
            ("subject_token_type", AT.to_string()),
            ("resource", to.to_string()),
        ]
    };
    let hop1 = token(h.invoices.clone(), ex(root.clone(), FILES)).await;
    let hop2 = token(h.files.clone(), ex(hop1.clone(), REPORTS)).await;
    let jwks: Value = http
        .get(format!("{}/jwks.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, c2) = verify(&hop2, &jwks, &server.base, REPORTS);
    assert_eq!(
        c2["act"],
        json!({"sub": h.files.0, "client_type": "service", "act": {"sub": h.invoices.0, "client_type": "service"}})
    );
    let r = http
        .post(format!("{}/revoke", server.base))
        .basic_auth(&h.agent.0, Some(&h.agent.1))
        .form(&[("token", root.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = http
        .post(format!("{}/introspect", server.base))
        .basic_auth(&h.reports.0, Some(&h.reports.1))
        .form(&[("token", hop2.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"active": false}));
    server.stop();
    assert!(env.cli(&["audit", "verify"]).status.success());
}

both!(
    /// A public client's bare client_id cannot introspect (RFC 7662 §2.1).
    public_clients_cannot_introspect, |backend| async move {
    let (env, app, h) = spawn(backend).await;
    let root = cc(&app, &h.agent, API, "invoices:read").await;
    let public = env.cli_json(&["client", "create", "--name", "pub", "--public", "--redirect-uri", "http://127.0.0.1/cb", "--json"]);
    let r = app.http.post(app.url("/introspect")).form(&[("client_id", public["client_id"].as_str().unwrap()), ("token", root.as_str())]).send().await.unwrap();
    assert_error(r, 401, "invalid_client", "introspection needs an authenticated (confidential) client").await;
    app.stop().await;
});
