//! POST /register (RFC 7591): open, token and closed modes, what a
//! dynamically registered client gets, every refusal with its exact error,
//! and the `client.registered` audit events behind them.

use serde_json::{json, Value};

use crate::both;
use crate::helpers::{assert_error, spawn_app, spawn_app_with_registration, TestApp};

async fn register(app: &TestApp, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/register"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The `client.registered` events of the audit trail, in order.
fn registered_events(env: &crate::helpers::Env) -> Vec<Value> {
    env.audit_events()
        .into_iter()
        .filter(|e| e["event"] == "client.registered")
        .collect()
}

both!(
    /// An MCP-style public client registers in open mode: no secret, its
    /// other metadata kept and echoed, stored as a dynamic client, audited.
    open_registration_of_a_public_mcp_client,
    |backend| async move {
        let (env, app) = spawn_app(backend).await;

        // Step 1 - register as MCP clients do
        let resp = register(
            &app,
            &json!({
                "client_name": "MCP Inspector",
                "redirect_uris": ["http://127.0.0.1:33418/callback"],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "application_type": "native",
                "logo_uri": "https://inspector.example.com/logo.png",
                "software_id": "mcp-inspector",
                "software_version": "0.16.1",
            }),
        )
        .await;
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body: Value = resp.json().await.unwrap();
        let id = body["client_id"].as_str().unwrap().to_string();
        assert!(id.starts_with("dyn_") && id.len() == 26, "{id}");
        assert!(body.get("client_secret").is_none(), "a public client has no secret");
        assert!(body.get("client_secret_expires_at").is_none());
        assert!(body["client_id_issued_at"].as_i64().unwrap() > 0);
        assert_eq!(body["client_name"], "MCP Inspector");
        assert_eq!(body["redirect_uris"], json!(["http://127.0.0.1:33418/callback"]));
        assert_eq!(body["grant_types"], json!(["authorization_code", "refresh_token"]));
        assert_eq!(body["response_types"], json!(["code"]));
        assert_eq!(body["token_endpoint_auth_method"], "none");
        assert_eq!(body["client_type"], "ai-agent");
        assert_eq!(body["application_type"], "native");
        assert_eq!(body["logo_uri"], "https://inspector.example.com/logo.png");
        assert_eq!(body["software_id"], "mcp-inspector");
        assert!(body.get("scope").is_none());

        // Step 2 - the stored client
        let c = mandate::store::clients::get(&app.state.db, &id)
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(c.origin.as_str(), "dynamic");
        assert!(c.public);
        assert!(c.secret_hash.is_none());
        assert_eq!(c.token_endpoint_auth_method.as_str(), "none");
        assert_eq!(c.name, "MCP Inspector");
        assert!(c.resources.is_empty() && c.scopes.is_empty());
        assert!(c.owns_resources.is_empty() && c.exchange_to.is_empty());
        assert!(!c.dpop_bound_access_tokens);
        let metadata = c.metadata.expect("metadata kept");
        assert_eq!(metadata["software_version"], "0.16.1");
        assert_eq!(metadata["application_type"], "native");

        // Step 3 - the audit event
        let events = registered_events(&env);
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert_eq!(e["outcome"], "success");
        assert_eq!(e["client_id"], id.as_str());
        assert_eq!(e["client_type"], "ai-agent");
        assert_eq!(e["ip"], "127.0.0.1");
        assert!(e["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    }
);

both!(
    /// A confidential client gets a 256-bit secret, shown once and stored
    /// only as its SHA-256; it cannot use client_credentials.
    confidential_registration_gets_a_hashed_secret,
    |backend| async move {
        let (env, app) = spawn_app(backend).await;
        let resp = register(
            &app,
            &json!({
                "client_name": "Invoice helper",
                "redirect_uris": ["https://app.example.com/callback"],
                "scope": "invoices:read files:read",
                "client_type": "web",
            }),
        )
        .await;
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        let id = body["client_id"].as_str().unwrap();
        let secret = body["client_secret"].as_str().unwrap();
        assert!(secret.len() >= 43, "{secret}");
        assert_eq!(body["client_secret_expires_at"], 0);
        assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
        assert_eq!(body["scope"], "invoices:read files:read");
        assert_eq!(body["client_type"], "web");

        let c = mandate::store::clients::get(&app.state.db, id)
            .await
            .unwrap()
            .unwrap();
        assert!(!c.public);
        assert_eq!(
            c.secret_hash.as_deref(),
            Some(mandate::secret::hash(secret).as_str())
        );
        assert_eq!(c.client_type.as_str(), "web");

        // The secret authenticates, but a dynamic client has no client_credentials.
        let resp = app
            .token_basic(id, secret, &[("grant_type", "client_credentials")])
            .await;
        assert_error(
            resp,
            400,
            "unauthorized_client",
            "this client may not use the client_credentials grant",
        )
        .await;

        // Neither the secret nor its hash is in the audit trail.
        let trail = serde_json::to_string(&env.audit_events()).unwrap();
        assert!(!trail.contains(secret));
        assert!(!trail.contains(c.secret_hash.as_deref().unwrap()));
    }
);

both!(
    /// Every refusal is the exact RFC 7591 §3.2.2 error, stores no client
    /// and is audited as a `client.registered` failure with its reason.
    refusals_store_nothing,
    |backend| async move {
        let (env, app) = spawn_app(backend).await;
        let cb = json!(["https://app.example.com/cb"]);
        let operator_only = |g: &str| {
            format!(
                "grant type `{g}` is for operator-created clients only; \
                 a dynamically registered client may use authorization_code and refresh_token"
            )
        };
        let cases: Vec<(Value, &str, String)> = vec![
            // * an http redirect URI that is not loopback
            (
                json!({"redirect_uris": ["http://app.example.com/cb"]}),
                "invalid_redirect_uri",
                "redirect URI `http://app.example.com/cb`: http is only allowed on a loopback host (127.0.0.1, [::1], localhost)".into(),
            ),
            // * a fragment
            (
                json!({"redirect_uris": ["https://app.example.com/cb#frag"]}),
                "invalid_redirect_uri",
                "redirect URI `https://app.example.com/cb#frag` must not contain a fragment".into(),
            ),
            // * a relative URI
            (
                json!({"redirect_uris": ["/cb"]}),
                "invalid_redirect_uri",
                "redirect URI `/cb` is not an absolute URL".into(),
            ),
            // * grants reserved for operator-created clients
            (
                json!({"redirect_uris": cb, "grant_types": ["authorization_code", "client_credentials"]}),
                "invalid_client_metadata",
                operator_only("client_credentials"),
            ),
            (
                json!({"redirect_uris": cb, "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"]}),
                "invalid_client_metadata",
                operator_only("urn:ietf:params:oauth:grant-type:token-exchange"),
            ),
            (
                json!({"redirect_uris": cb, "grant_types": ["urn:openid:params:grant-type:ciba"]}),
                "invalid_client_metadata",
                operator_only("urn:openid:params:grant-type:ciba"),
            ),
            // * grants nobody gets
            (
                json!({"redirect_uris": cb, "grant_types": ["password"]}),
                "invalid_client_metadata",
                "grant type `password` is not supported; a dynamically registered client may use authorization_code and refresh_token".into(),
            ),
            // * the implicit flow
            (
                json!({"redirect_uris": cb, "response_types": ["token"]}),
                "invalid_client_metadata",
                "response type `token` is not supported; only `code` (the authorization code flow with PKCE)".into(),
            ),
            // * private_key_jwt
            (
                json!({"redirect_uris": cb, "token_endpoint_auth_method": "private_key_jwt"}),
                "invalid_client_metadata",
                "token_endpoint_auth_method `private_key_jwt` is not supported for dynamic registration yet".into(),
            ),
            // * an approval-only scope
            (
                json!({"redirect_uris": cb, "scope": "invoices:read payments:send"}),
                "invalid_client_metadata",
                "scope `payments:send` is granted only through a human approval and cannot be registered".into(),
            ),
            // * an unknown scope
            (
                json!({"redirect_uris": cb, "scope": "admin:all"}),
                "invalid_client_metadata",
                "scope `admin:all` is not a scope of this server".into(),
            ),
            // * wrong JSON types
            (
                json!({"redirect_uris": "https://app.example.com/cb"}),
                "invalid_client_metadata",
                "`redirect_uris` must be an array of strings".into(),
            ),
            (
                json!({"redirect_uris": cb, "client_name": ["a"]}),
                "invalid_client_metadata",
                "`client_name` must be a string".into(),
            ),
            // * no redirect URI
            (
                json!({"client_name": "x"}),
                "invalid_client_metadata",
                "`redirect_uris` is required: register at least one redirect URI".into(),
            ),
            // * not an object
            (
                json!(["https://app.example.com/cb"]),
                "invalid_client_metadata",
                "the body must be a JSON object of client metadata".into(),
            ),
        ];
        for (body, error, description) in &cases {
            let resp = register(&app, body).await;
            assert_error(resp, 400, error, description).await;
        }

        // * a body that is not JSON
        let resp = app
            .http
            .post(app.url("/register"))
            .header("content-type", "application/json")
            .body("redirect_uris=https://app.example.com/cb")
            .send()
            .await
            .unwrap();
        assert_error(
            resp,
            400,
            "invalid_client_metadata",
            "the body is not valid JSON: expected value at line 1 column 1",
        )
        .await;
        // * a form body
        let resp = app
            .http
            .post(app.url("/register"))
            .form(&[("redirect_uris", "https://app.example.com/cb")])
            .send()
            .await
            .unwrap();
        assert_error(
            resp,
            400,
            "invalid_client_metadata",
            "the body must be application/json",
        )
        .await;
        // * a body over 64 KiB
        let resp = register(
            &app,
            &json!({"redirect_uris": cb, "client_uri": "x".repeat(70_000)}),
        )
        .await;
        assert_error(
            resp,
            413,
            "invalid_client_metadata",
            "the request body is larger than 65536 bytes",
        )
        .await;

        assert_eq!(app.count("clients").await, 0, "no refusal stores a client");
        let events = registered_events(&env);
        assert_eq!(events.len(), cases.len() + 3);
        assert!(events.iter().all(|e| e["outcome"] == "failure"
            && e["client_id"].is_null()
            && e["ip"] == "127.0.0.1"));
        assert_eq!(
            events[0]["reason"],
            format!("invalid_redirect_uri: {}", cases[0].2)
        );
    }
);

both!(
    /// Mode `token`: no token, an unknown, an expired or a used one is 401
    /// `invalid_token`; a CLI-created token registers one client, once.
    token_mode_needs_a_single_use_initial_access_token,
    |backend| async move {
        let (env, app) = spawn_app_with_registration(backend, "mode = \"token\"").await;
        let body = json!({"redirect_uris": ["http://127.0.0.1:33418/callback"], "token_endpoint_auth_method": "none"});
        let with_token = |token: String| {
            app.http
                .post(app.url("/register"))
                .bearer_auth(token)
                .json(&body)
                .send()
        };
        let bearer_challenge = |resp: &reqwest::Response| {
            assert_eq!(
                resp.headers()["www-authenticate"],
                "Bearer error=\"invalid_token\""
            );
        };

        // Step 1 - without a token
        let resp = register(&app, &body).await;
        bearer_challenge(&resp);
        assert_error(
            resp,
            401,
            "invalid_token",
            "an initial access token is required: send `Authorization: Bearer <token>`",
        )
        .await;

        // Step 2 - with a token nobody issued
        let resp = with_token("made-up".into()).await.unwrap();
        bearer_challenge(&resp);
        assert_error(
            resp,
            401,
            "invalid_token",
            "the initial access token is unknown, expired or already used",
        )
        .await;

        // Step 3 - the operator creates one
        let created = env.cli_json(&["registration-token", "create", "--json"]);
        let token = created["token"].as_str().unwrap().to_string();
        assert!(token.len() >= 43);
        let expires_at = created["expires_at"].as_i64().unwrap();
        assert!((expires_at - app.state.clock.now() - 86_400).abs() <= 5);

        // Step 4 - a refused registration does not spend it
        let resp = app
            .http
            .post(app.url("/register"))
            .bearer_auth(&token)
            .json(&json!({"redirect_uris": ["http://evil.example.com/cb"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);

        // Step 5 - it registers a client
        let resp = with_token(token.clone()).await.unwrap();
        assert_eq!(resp.status(), 201);
        let registered: Value = resp.json().await.unwrap();
        assert!(registered["client_id"].as_str().unwrap().starts_with("dyn_"));

        // Step 6 - but only one
        let resp = with_token(token.clone()).await.unwrap();
        bearer_challenge(&resp);
        assert_error(
            resp,
            401,
            "invalid_token",
            "the initial access token is unknown, expired or already used",
        )
        .await;
        assert_eq!(app.count("clients").await, 1);

        // Step 7 - an expired token
        let short = env.cli_json(&["registration-token", "create", "--expires-in", "60", "--json"]);
        app.state.clock.advance(61);
        let resp = with_token(short["token"].as_str().unwrap().into())
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(app.count("clients").await, 1);

        // The operator action is audited; no token is in the trail.
        let events = env.audit_events();
        assert_eq!(
            events
                .iter()
                .filter(|e| e["event"] == "registration_token.created")
                .count(),
            2
        );
        let trail = serde_json::to_string(&events).unwrap();
        assert!(!trail.contains(&token));
        assert!(!trail.contains(&mandate::secret::hash(&token)));
    }
);

both!(
    /// Two registrations racing with one token: exactly one gets a client.
    a_token_is_spent_once_under_concurrency,
    |backend| async move {
        let (env, app) = spawn_app_with_registration(backend, "mode = \"token\"").await;
        let token = env.cli_json(&["registration-token", "create", "--json"])["token"]
            .as_str()
            .unwrap()
            .to_string();
        let body = json!({"redirect_uris": ["https://app.example.com/cb"]});
        let send = || {
            app.http
                .post(app.url("/register"))
                .bearer_auth(&token)
                .json(&body)
                .send()
        };
        let results = futures_join(send(), send(), send(), send()).await;
        let created = results.iter().filter(|s| **s == 201).count();
        assert_eq!(created, 1, "{results:?}");
        assert!(results.iter().all(|s| *s == 201 || *s == 401), "{results:?}");
        assert_eq!(app.count("clients").await, 1);
    }
);

async fn futures_join(
    a: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    b: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    c: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    d: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
) -> Vec<u16> {
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    [a, b, c, d]
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect()
}

both!(
    /// Mode `closed`: 403 `access_denied`, nothing stored, the refusal audited.
    closed_mode_refuses_every_registration,
    |backend| async move {
        let (env, app) = spawn_app_with_registration(backend, "mode = \"closed\"").await;
        let resp = register(
            &app,
            &json!({"redirect_uris": ["https://app.example.com/cb"]}),
        )
        .await;
        assert_error(
            resp,
            403,
            "access_denied",
            "dynamic client registration is disabled",
        )
        .await;
        assert_eq!(app.count("clients").await, 0);
        let events = registered_events(&env);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0]["reason"],
            "access_denied: dynamic client registration is disabled"
        );
    }
);
