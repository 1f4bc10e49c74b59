//! POST /token with client_credentials: issuance, claims, every error of
//! SPEC §2/§3, and the audit events behind them.

use serde_json::Value;

use crate::both;
use crate::helpers::{assert_error, spawn_app, verify};

const API: &str = "https://api.example.com";

both!(
    basic_auth_issues_a_verifiable_rfc9068_token,
    |backend| async move {
        let (env, app) = spawn_app(backend).await;
        let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);

        // Step 1 - request a token with client_secret_basic
        let resp = app
            .token_basic(
                &id,
                &secret,
                &[
                    ("grant_type", "client_credentials"),
                    ("resource", API),
                    ("scope", "invoices:read"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 300);
        assert_eq!(body["scope"], "invoices:read");
        assert!(body.get("refresh_token").is_none());

        // Step 2 - verify it independently against the served JWKS
        let token = body["access_token"].as_str().unwrap();
        let (header, claims) = verify(token, &app.jwks().await, &app.base, API);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(claims["sub"], id.as_str());
        assert_eq!(claims["client_id"], id.as_str());
        assert_eq!(
            claims["aud"], API,
            "aud is exactly one resource, as a string"
        );
        assert_eq!(claims["scope"], "invoices:read");
        assert_eq!(claims["client_type"], "ai-agent");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            300
        );
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 32));
        for absent in ["act", "acr", "amr", "auth_time", "cnf"] {
            assert!(
                claims.get(absent).is_none(),
                "client credentials carry no {absent}"
            );
        }

        // Step 3 - the issuance is in the audit trail with the token's jti, and recorded
        // (the operator's `client create` is an event of its own, not counted here)
        let lines = env.token_events();
        assert_eq!(lines.len(), 1);
        let e = &lines[0];
        assert_eq!(e["event"], "token.issued");
        assert_eq!(e["outcome"], "success");
        assert_eq!(e["jti"], claims["jti"]);
        assert_eq!(e["client_id"], id.as_str());
        assert_eq!(e["audience"], API);
        assert_eq!(e["scope_granted"], "invoices:read");
        assert_eq!(e["ip"], "127.0.0.1");
        assert!(e["request_id"].is_string());
        for field in [
            "id",
            "time",
            "event",
            "outcome",
            "reason",
            "user",
            "client_id",
            "client_type",
            "actor_chain",
            "audience",
            "scope_requested",
            "scope_granted",
            "jti",
            "parent_jti",
            "acr",
            "ip",
            "request_id",
            "prev_hash",
            "hash",
        ] {
            assert!(e.get(field).is_some(), "audit field {field} missing");
        }
        assert!(
            !serde_json::to_string(e).unwrap().contains(token),
            "raw token in audit"
        );
        assert_eq!(app.count("tokens").await, 1);
        app.stop().await;
    }
);

both!(
    post_auth_and_default_audience_and_scope,
    |backend| async move {
        let (env, app) = spawn_app(backend).await;
        let (id, secret) = env.create_client(&[
            "--resource",
            "https://files.example.com",
            "--scope",
            "files:read",
        ]);
        let resp = app
            .http
            .post(app.url("/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        // The single permitted resource and its registered scope are the defaults;
        // the resource's own lifetime (120 s) applies.
        assert_eq!(body["expires_in"], 120);
        let (_, claims) = verify(
            body["access_token"].as_str().unwrap(),
            &app.jwks().await,
            &app.base,
            "https://files.example.com",
        );
        assert_eq!(claims["scope"], "files:read");
        app.stop().await;
    }
);

both!(
    /// Every refusal of SPEC §2/§3, asserted exactly; none stores a token.
    errors_are_exact_and_change_nothing, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let (id, secret) = env.create_client(&[
        "--resource", API, "--resource", "https://files.example.com",
        "--scope", "invoices:read", "--scope", "invoices:write", "--scope", "payments:send",
    ]);
    let one = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    let cc = ("grant_type", "client_credentials");
    let aud = ("resource", API);

    // Failed client authentication: 401 invalid_client with WWW-Authenticate.
    assert_error(app.token_basic(&id, "wrong", &[cc, aud]).await, 401, "invalid_client", "client authentication failed").await;
    assert_error(app.token_basic("nobody", &secret, &[cc, aud]).await, 401, "invalid_client", "client authentication failed").await;
    assert_error(app.token_basic(&one.0, &secret, &[cc, aud]).await, 401, "invalid_client", "client authentication failed").await;
    let resp = app.http.post(app.url("/token")).form(&[cc, aud]).send().await.unwrap();
    assert_error(resp, 401, "invalid_client", "client authentication is required").await;
    let resp = app.http.post(app.url("/token")).header("authorization", "Bearer abc").form(&[cc]).send().await.unwrap();
    assert_error(resp, 401, "invalid_client", "unsupported Authorization scheme; use Basic").await;
    // Two authentication methods at once.
    let resp = app.http.post(app.url("/token")).basic_auth(&id, Some(&secret))
        .form(&[cc, ("client_id", id.as_str()), ("client_secret", secret.as_str())]).send().await.unwrap();
    assert_error(resp, 400, "invalid_request", "use one client authentication method, not Basic and client_secret together").await;

    // Scopes.
    let scope = |s| [cc, aud, ("scope", s)];
    assert_error(app.token_basic(&id, &secret, &scope("admin")).await, 400, "invalid_scope", "unknown scope `admin`").await;
    assert_error(app.token_basic(&id, &secret, &scope("files:read")).await, 400, "invalid_scope",
        "scope `files:read` belongs to `https://files.example.com`, not to the audience `https://api.example.com`").await;
    assert_error(app.token_basic(&id, &secret, &scope("payments:send")).await, 400, "invalid_scope",
        "scope `payments:send` needs a human approval; request it with CIBA (/bc-authorize)").await;
    assert_error(app.token_basic(&id, &secret, &scope("invoices:write")).await, 400, "invalid_scope",
        "scope `invoices:write` needs a user authenticated at `urn:mandate:acr:mfa`; client credentials carry no user").await;
    assert_error(app.token_basic(&one.0, &one.1, &scope("invoices:write invoices:read")).await, 400, "invalid_scope",
        "scope `invoices:write` needs a user authenticated at `urn:mandate:acr:mfa`; client credentials carry no user").await;

    // Resources.
    assert_error(app.token_basic(&id, &secret, &[cc, ("resource", "https://evil.example.com")]).await, 400, "invalid_target",
        "unknown resource `https://evil.example.com`").await;
    assert_error(app.token_basic(&one.0, &one.1, &[cc, ("resource", "https://files.example.com")]).await, 400, "invalid_target",
        "this client may not request tokens for `https://files.example.com`").await;
    assert_error(app.token_basic(&id, &secret, &[cc]).await, 400, "invalid_target",
        "this client may use several resources; name the audience with `resource`").await;
    assert_error(app.token_basic(&id, &secret, &[cc, aud, ("resource", "https://files.example.com")]).await, 400, "invalid_target",
        "a token has exactly one audience; send one `resource`").await;
    assert_error(app.token_basic(&id, &secret, &[cc, ("resource", "https://api.example.com#frag")]).await, 400, "invalid_target",
        "`resource` must be an absolute URI without a fragment").await;

    // Grants.
    assert_error(app.token_basic(&id, &secret, &[("grant_type", "password"), aud]).await, 400, "unsupported_grant_type",
        "this server does not support that grant_type").await;
    assert_error(app.token_basic(&id, &secret, &[aud]).await, 400, "invalid_request", "missing `grant_type`").await;
    let public = env.cli_json(&["client", "create", "--name", "pub", "--public", "--redirect-uri", "http://127.0.0.1/cb", "--json"]);
    let resp = app.http.post(app.url("/token"))
        .form(&[cc, ("client_id", public["client_id"].as_str().unwrap())]).send().await.unwrap();
    assert_error(resp, 400, "unauthorized_client", "this client may not use the client_credentials grant").await;

    // Malformed bodies.
    let raw = |body: Vec<u8>, ct: &'static str| {
        app.http.post(app.url("/token")).basic_auth(&id, Some(&secret)).header("content-type", ct).body(body).send()
    };
    let form = "application/x-www-form-urlencoded";
    assert_error(raw(b"grant_type=client_credentials&scope=a&scope=b".to_vec(), form).await.unwrap(), 400, "invalid_request",
        "parameter `scope` is included more than once").await;
    assert_error(raw(b"grant_type=client_credentials&scope=%ff%fe".to_vec(), form).await.unwrap(), 400, "invalid_request",
        "parameters must be valid UTF-8").await;
    assert_error(raw(b"grant_type=%zz".to_vec(), form).await.unwrap(), 400, "invalid_request", "malformed percent-encoding").await;
    assert_error(raw(vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0xff], form).await.unwrap(), 400, "invalid_request",
        "parameters must be valid UTF-8").await;
    assert_error(raw(br#"{"grant_type":"client_credentials"}"#.to_vec(), "application/json").await.unwrap(), 400, "invalid_request",
        "the body must be application/x-www-form-urlencoded").await;
    let mut big = b"grant_type=client_credentials&x=".to_vec();
    big.resize(70 * 1024, b'a');
    assert_error(raw(big, form).await.unwrap(), 413, "invalid_request", "the request body is larger than 65536 bytes").await;
    let resp = app.http.get(app.url("/token")).send().await.unwrap();
    assert_eq!(resp.status(), 405);

    // Nothing was issued or stored; every refusal is one token.denied event
    // (the operator events of the `client create`s above are not token events).
    assert_eq!(app.count("tokens").await, 0);
    let text = serde_json::to_string(&env.audit_events()).unwrap();
    let lines = env.token_events();
    assert_eq!(lines.len(), 25);
    assert!(lines.iter().all(|e| e["event"] == "token.denied" && e["outcome"] == "failure"));
    assert!(!text.contains(&secret), "a client secret reached the audit trail");
    let first = &lines[0];
    assert_eq!(first["reason"], "invalid_client: client authentication failed");
    assert_eq!(first["client_id"], id.as_str());
    app.stop().await;
});

both!(
    /// Concurrent requests share group commits; the hash chain stays intact.
    concurrent_issuance_keeps_the_chain, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    // Events already in the chain (the operator's `client create`).
    let before = app.count("audit_events").await;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (http, url, id, secret) = (app.http.clone(), app.url("/token"), id.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).basic_auth(id, Some(secret)).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            v["access_token"].as_str().unwrap().to_string()
        }));
    }
    let mut jtis = std::collections::HashSet::new();
    let jwks = app.jwks().await;
    for t in tasks {
        let token = t.await.unwrap();
        let (_, claims) = verify(&token, &jwks, &app.base, API);
        jtis.insert(claims["jti"].as_str().unwrap().to_string());
    }
    assert_eq!(jtis.len(), 64);
    assert_eq!(app.count("tokens").await, 64);
    assert_eq!(app.count_token_events().await, 64);
    assert_eq!(app.count("audit_events").await, before + 64, "exactly one event per request");
    let out = env.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("audit chain intact: {} events", before + 64));
    app.stop().await;
});

both!(
    /// Tampering with a stored event is found by `mandate audit verify`.
    audit_verify_names_a_tampered_event, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    for _ in 0..3 {
        app.cc_token(&id, &secret).await;
    }
    let victim: String = mandate::on_db!(&app.state.db, |p| sqlx::query_scalar("SELECT id FROM audit_events WHERE seq = 2")
        .fetch_one(p).await.unwrap());
    mandate::on_db!(&app.state.db, |p| sqlx::query("UPDATE audit_events SET scope_granted = 'admin' WHERE seq = 2")
        .execute(p).await.map(|_| ()).unwrap());
    let out = env.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&victim), "{err}");
    app.stop().await;
});

both!(
    /// Client rows are cached per process, yet a change made anywhere (the
    /// CLI here, another instance in production) applies from the very next
    /// request at every instance: the audit commit checks the cached row.
    cached_clients_follow_rotation_change_and_deletion_at_once, |backend| async move {
        let (env, one) = spawn_app(backend).await;
        let two = crate::helpers::start_instance_of(&env, &one).await;
        let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
        let cc = [("grant_type", "client_credentials"), ("scope", "invoices:read")];
        async fn refused(app: &crate::helpers::TestApp, id: &str, secret: &str) {
            let cc = [("grant_type", "client_credentials"), ("scope", "invoices:read")];
            assert_error(app.token_basic(id, secret, &cc).await, 401, "invalid_client", "client authentication failed").await;
        }
        // Warm both caches.
        for app in [&one, &two, &one, &two] {
            app.cc_token(&id, &secret).await;
        }
        let issued = one.count("tokens").await;

        // Rotation: the old secret fails at once on both instances, the new one works.
        let rotated = env.cli_json(&["client", "rotate-secret", &id, "--json"]);
        let new_secret = rotated["client_secret"].as_str().unwrap().to_string();
        refused(&one, &id, &secret).await;
        refused(&two, &id, &secret).await;
        assert_eq!(one.count("tokens").await, issued, "a refused request stored a token");
        let last = env.audit_events().last().cloned().unwrap();
        assert_eq!(last["event"], "token.denied");
        assert_eq!(last["client_id"], id.as_str());
        assert_eq!(last["reason"], "invalid_client: client authentication failed");
        for app in [&one, &two, &one, &two] {
            app.cc_token(&id, &new_secret).await;
        }

        // Any other column: the registered scopes shrink, updated_at untouched.
        let set_scopes = |scopes: &'static str| {
            let (db, id) = (one.state.db.clone(), id.clone());
            async move {
                mandate::on_db!(&db, |p| sqlx::query("UPDATE clients SET scopes = $1 WHERE client_id = $2")
                    .bind(scopes)
                    .bind(&id)
                    .execute(p)
                    .await
                    .unwrap()
                    .rows_affected())
            }
        };
        set_scopes("[]").await;
        for app in [&one, &two] {
            let r = app.token_basic(&id, &new_secret, &cc).await;
            assert_eq!(r.status(), 400, "a cached row outlived a change of its scopes");
            assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");
        }
        set_scopes(r#"["invoices:read"]"#).await;
        for app in [&one, &two] {
            app.cc_token(&id, &new_secret).await;
        }

        // Deletion: refused at once everywhere.
        env.cli_json(&["client", "delete", &id, "--json"]);
        refused(&one, &id, &new_secret).await;
        refused(&two, &id, &new_secret).await;
        let denied = env.audit_events().iter().filter(|e| e["event"] == "token.denied").count();
        assert_eq!(denied, 6, "each refusal is one audit event");
        two.stop().await;
        one.stop().await;
    }
);
