//! Metadata (RFC 8414), JWKS, health.

use serde_json::Value;

use crate::both;
use crate::helpers::{assert_error, spawn_app};

both!(
    metadata_at_both_paths_lists_what_is_implemented,
    |backend| async move {
        let (_env, app) = spawn_app(backend).await;
        let a: Value = app
            .http
            .get(app.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let b: Value = app
            .http
            .get(app.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a["issuer"], app.base.as_str());
        assert_eq!(a["token_endpoint"], app.url("/token"));
        assert_eq!(a["jwks_uri"], app.url("/jwks.json"));
        assert_eq!(a["authorization_endpoint"], app.url("/authorize"));
        assert_eq!(a["registration_endpoint"], app.url("/register"));
        assert_eq!(
            a["grant_types_supported"],
            serde_json::json!([
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:token-exchange"
            ])
        );
        assert_eq!(a["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            a["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(a["authorization_response_iss_parameter_supported"], true);
        assert_eq!(a["client_id_metadata_document_supported"], true);
        assert_eq!(
            a["token_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
        );
        let scopes: Vec<&str> = a["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(scopes.contains(&"invoices:read") && scopes.contains(&"files:read"));
        assert_eq!(a["introspection_endpoint"], app.url("/introspect"));
        assert_eq!(a["revocation_endpoint"], app.url("/revoke"));
        assert!(
            a.get("backchannel_authentication_endpoint").is_none(),
            "CIBA is not implemented yet, so not advertised"
        );
        app.stop().await;
    }
);

both!(jwks_is_cacheable_and_public_only, |backend| async move {
    let (_env, app) = spawn_app(backend).await;
    let resp = app.http.get(app.url("/jwks.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cc = resp.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cc.contains("max-age=300"), "{cc}");
    let jwks: Value = resp.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["crv"], "P-256");
    assert!(keys[0]["kid"].is_string());
    assert!(keys[0].get("d").is_none(), "private key material published");
    app.stop().await;
});

both!(health_and_readiness, |backend| async move {
    let (_env, app) = spawn_app(backend).await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-request-id").is_some());
    // A sane incoming request id is kept; a hostile one is replaced.
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "a b\tc")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "a b\tc");
    let r = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    app.state.db.close().await;
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503, "readiness follows the database");
    // With the database gone, the token endpoint fails closed with a retryable 503.
    let r = app
        .token_basic("any", "secret", &[("grant_type", "client_credentials")])
        .await;
    assert_error(
        r,
        503,
        "temporarily_unavailable",
        "the server is temporarily unable to complete the request",
    )
    .await;
    app.stop().await;
});

/// A client that trickles its headers is disconnected (slowloris), while a
/// normal request on the same server is served.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_env, app) = spawn_app(crate::helpers::Backend::Sqlite).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /token HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finish the headers. The server must end the connection; the outer
    // bound only keeps a broken server from hanging the suite.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        crate::helpers::HEADER_READ_TIMEOUT * 10,
        slow.read_to_end(&mut buf),
    )
    .await;
    assert!(
        read.is_ok(),
        "the server kept a connection with unfinished headers open"
    );
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

both!(
    /// /metrics counts decisions with bounded labels: a caller's made-up grant
    /// type is `other`, never a new series.
    metrics_count_token_decisions,
    |backend| async move {
        let (env, app) = spawn_app(backend).await;
        let (id, secret) = env.create_client(&["--resource", "https://api.example.com", "--scope", "invoices:read"]);
        app.cc_token(&id, &secret).await;
        app.token_basic(&id, "wrong", &[("grant_type", "client_credentials")]).await;
        app.token_basic(&id, &secret, &[("grant_type", "urn:made-up:grant")]).await;
        let r = app.http.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
        let text = r.text().await.unwrap();
        for line in [
            r#"mandate_tokens_total{grant_type="client_credentials",outcome="issued"} 1"#,
            r#"mandate_tokens_total{grant_type="client_credentials",outcome="invalid_client"} 1"#,
            r#"mandate_tokens_total{grant_type="other",outcome="unsupported_grant_type"} 1"#,
            "mandate_audit_events_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
        assert!(!text.contains("made-up"));
        // Latency per endpoint and outcome; queue depth and pool use.
        assert!(text.contains(r#"mandate_http_request_duration_seconds_count{endpoint="/token",outcome="2xx"} 1"#), "{text}");
        assert!(text.contains(r#"mandate_http_request_duration_seconds_count{endpoint="/token",outcome="4xx"} 2"#), "{text}");
        for gauge in ["mandate_audit_queue_depth ", "mandate_db_pool_connections ", "mandate_db_pool_idle "] {
            assert!(text.lines().any(|l| l.starts_with(gauge)), "missing {gauge} in:\n{text}");
        }
        assert!(text.contains(r#"mandate_http_requests_total{method="POST",status="200"} 1"#), "{text}");
        app.stop().await;
    }
);
