//! The resource-server module (SPEC §9) against a live issuer: forged,
//! expired, wrong-audience, wrong-issuer and wrong-`typ` tokens, a key
//! rotation (the new `kid` fetched once, not per request), and the demo API
//! as a real process with its RFC 6750 / RFC 9470 challenges.

use std::sync::Arc;

use mandate::oauth::access_token::{new_jti, AccessClaims};
use mandate::oauth::types::ClientType;
use mandate::rs::{Challenge, ResourceServer, RsConfig};
use serde_json::Value;

use crate::both;
use crate::helpers::{free_port, spawn_app, TestApp};

const API: &str = "https://api.example.com";

fn claims(app: &TestApp, now: i64) -> AccessClaims {
    AccessClaims {
        iss: app.base.clone(),
        sub: "alice".into(),
        aud: API.into(),
        exp: now + 300,
        iat: now,
        jti: new_jti(),
        client_id: "agent".into(),
        scope: "invoices:read invoices:write".into(),
        client_type: ClientType::AiAgent,
        act: None,
        acr: Some("urn:mandate:acr:pwd".into()),
        amr: Some(vec!["pwd".into()]),
        auth_time: Some(now - 10),
        cnf: None,
        authorization_details: None,
    }
}

fn sign(app: &TestApp, c: &AccessClaims) -> String {
    c.sign(&app.state.keys).unwrap()
}

fn rs_for(app: &TestApp) -> Arc<ResourceServer> {
    let mut cfg = RsConfig::new(&app.base, API, "http://127.0.0.1:1");
    cfg.min_refetch = std::time::Duration::from_secs(3600);
    ResourceServer::new(cfg)
}

fn is_invalid_token(r: &Result<AccessClaims, Challenge>) -> bool {
    matches!(r, Err(Challenge::InvalidToken { .. }))
}

both!(
    /// Forged, expired, wrong-audience, wrong-issuer and wrong-typ tokens are
    /// refused; a good one passes; a rotated key is fetched once.
    resource_server_validates_and_caches_keys, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let rs = rs_for(&app);
    let now = app.state.clock.now();
    let good = sign(&app, &claims(&app, now));
    assert_eq!(rs.validate(&good, now).await.unwrap().sub, "alice");
    assert_eq!(rs.jwks_fetches(), 1);
    for _ in 0..5 {
        rs.validate(&good, now).await.unwrap();
    }
    assert_eq!(rs.jwks_fetches(), 1, "keys are cached by kid");

    //  * expired (beyond the leeway)
    let mut c = claims(&app, now);
    c.exp = now - 120;
    assert!(is_invalid_token(&rs.validate(&sign(&app, &c), now).await));
    //  * another audience
    let mut c = claims(&app, now);
    c.aud = "https://files.example.com".into();
    assert!(is_invalid_token(&rs.validate(&sign(&app, &c), now).await));
    //  * another issuer
    let mut c = claims(&app, now);
    c.iss = "https://evil.example.com".into();
    assert!(is_invalid_token(&rs.validate(&sign(&app, &c), now).await));
    //  * the wrong typ (an ID-token-like JWT)
    let payload = serde_json::to_vec(&claims(&app, now)).unwrap();
    let jwt = app.state.keys.sign("JWT", &payload, now).unwrap();
    assert!(is_invalid_token(&rs.validate(&jwt, now).await));
    //  * forged: tampered payload, alg none
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = |s: &[u8]| { use base64::Engine; base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s) };
    let mut evil = claims(&app, now);
    evil.sub = "mallory".into();
    let tampered = format!("{}.{}.{}", parts[0], b64(&serde_json::to_vec(&evil).unwrap()), parts[2]);
    assert!(is_invalid_token(&rs.validate(&tampered, now).await));
    let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"at+jwt"}"#), parts[1]);
    assert!(is_invalid_token(&rs.validate(&none, now).await));
    //  * signed by a key the issuer does not publish: one refetch at most
    let other = tempfile::tempdir().unwrap();
    let ring = mandate::keys::KeyRing::open(other.path(), now).unwrap();
    let foreign = claims(&app, now).sign(&ring).unwrap();
    for _ in 0..5 {
        assert!(is_invalid_token(&rs.validate(&foreign, now).await));
    }
    assert!(rs.jwks_fetches() <= 2, "unknown kids are rate-limited: {}", rs.jwks_fetches());

    // Key rotation: the new kid is fetched once, then served from the cache.
    let mut cfg = RsConfig::new(&app.base, API, "http://127.0.0.1:1");
    cfg.min_refetch = std::time::Duration::from_millis(0);
    let rs = ResourceServer::new(cfg);
    rs.validate(&good, now).await.unwrap();
    assert_eq!(rs.jwks_fetches(), 1);
    assert!(env.cli(&["keys", "rotate", "--now"]).status.success());
    app.state.keys.refresh().unwrap();
    // The new key signs from the CLI's own clock reading: sign at or after it.
    let now = app.state.clock.now() + 1;
    let rotated = sign(&app, &claims(&app, now));
    assert_ne!(
        jsonwebtoken::decode_header(&rotated).unwrap().kid,
        jsonwebtoken::decode_header(&good).unwrap().kid
    );
    rs.validate(&rotated, now).await.unwrap();
    assert_eq!(rs.jwks_fetches(), 2, "an unknown kid triggers one refetch");
    for _ in 0..5 {
        rs.validate(&rotated, now).await.unwrap();
        rs.validate(&good, now).await.unwrap();
    }
    assert_eq!(rs.jwks_fetches(), 2, "then both keys come from the cache, not one fetch per request");
    app.stop().await;
});

/// The demo API as a real process: scope first (403 insufficient_scope),
/// then the RFC 9470 step-up challenge, then success; metadata per RFC 9728.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_api_challenges() {
    let (_env, app) = spawn_app(crate::helpers::Backend::Sqlite).await;
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args([
            "demo-api",
            "--issuer",
            &app.base,
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--resource",
            API,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http
            .get(format!("{base}/.well-known/oauth-protected-resource"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "demo-api did not start");
    let meta: Value = http
        .get(format!("{base}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["resource"], API);
    assert_eq!(meta["authorization_servers"], serde_json::json!([app.base]));
    assert_eq!(
        meta["bearer_methods_supported"],
        serde_json::json!(["header"])
    );

    let now = app.state.clock.now();
    // No token: 401 with a challenge naming the metadata.
    let r = http.get(format!("{base}/invoices")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        www.starts_with("Bearer ")
            && www.contains(&format!(
                "resource_metadata=\"{base}/.well-known/oauth-protected-resource\""
            )),
        "{www}"
    );
    // invoices:read is enough to list.
    let mut read = claims(&app, now);
    read.scope = "invoices:read".into();
    let r = http
        .get(format!("{base}/invoices"))
        .bearer_auth(sign(&app, &read))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Disputing needs invoices:write: scope first.
    let r = http
        .post(format!("{base}/invoices/inv-1001/dispute"))
        .bearer_auth(sign(&app, &read))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains("scope=\"invoices:write\""),
        "{www}"
    );
    // With the scope but a password login: the RFC 9470 challenge.
    let write = claims(&app, now);
    let r = http
        .post(format!("{base}/invoices/inv-1001/dispute"))
        .bearer_auth(sign(&app, &write))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        www.contains("error=\"insufficient_user_authentication\"")
            && www.contains("acr_values=\"urn:mandate:acr:mfa\"")
            && www.contains("max_age=300"),
        "{www}"
    );
    // MFA, but too long ago: challenged too.
    let mut old = claims(&app, now);
    old.acr = Some("urn:mandate:acr:mfa".into());
    old.auth_time = Some(now - 600);
    let r = http
        .post(format!("{base}/invoices/inv-1001/dispute"))
        .bearer_auth(sign(&app, &old))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // MFA, recent: allowed.
    let mut fresh = claims(&app, now);
    fresh.acr = Some("urn:mandate:acr:mfa".into());
    let r = http
        .post(format!("{base}/invoices/inv-1001/dispute"))
        .bearer_auth(sign(&app, &fresh))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "disputed");
    let _ = child.kill();
    let _ = child.wait();
    app.stop().await;
}
