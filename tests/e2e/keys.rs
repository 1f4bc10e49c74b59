//! Key rotation: a rotated key is published before it signs, and tokens signed
//! before a rotation still verify with the served JWKS afterwards.

use serde_json::Value;

use crate::both;
use crate::helpers::{spawn_app, verify};

const API: &str = "https://api.example.com";

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

both!(
    token_from_before_rotation_still_verifies,
    |backend| async move {
        let (env, app) = spawn_app(backend).await;
        let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);

        // Step 1 - a token signed by the first key
        let before = app.cc_token(&id, &secret).await;
        let old_kid = jsonwebtoken::decode_header(&before).unwrap().kid.unwrap();

        // Step 2 - rotate with the default delay: published at once, not signing yet
        let listed = env.cli_json(&["keys", "rotate", "--json"]);
        let pending: Vec<&Value> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["status"] == "pending")
            .collect();
        assert_eq!(pending.len(), 1);
        let pending_kid = pending[0]["kid"].as_str().unwrap().to_string();
        let jwks = app.jwks().await;
        assert!(
            kids(&jwks).contains(&pending_kid),
            "a rotated key is published before it signs"
        );
        let still_old = app.cc_token(&id, &secret).await;
        assert_eq!(
            jsonwebtoken::decode_header(&still_old)
                .unwrap()
                .kid
                .unwrap(),
            old_kid
        );

        // Step 3 - rotate with --now: the newest key signs at once
        let listed = env.cli_json(&["keys", "rotate", "--now", "--json"]);
        let active: Vec<&Value> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["status"] == "active")
            .collect();
        assert_eq!(active.len(), 1);
        let new_kid = active[0]["kid"].as_str().unwrap().to_string();
        assert_ne!(new_kid, old_kid);
        let jwks = app.jwks().await;
        assert_eq!(
            kids(&jwks).len(),
            3,
            "old, pending and new keys are all published"
        );
        let after = app.cc_token(&id, &secret).await;
        assert_eq!(
            jsonwebtoken::decode_header(&after).unwrap().kid.unwrap(),
            new_kid
        );

        // Step 4 - both tokens verify with the JWKS served now
        verify(&before, &jwks, &app.base, API);
        verify(&after, &jwks, &app.base, API);
        app.stop().await;
    }
);

both!(
    /// `keys rotate` under load: tokens issued before, during and after the
    /// rotation all verify, at a resource server that follows the JWKS and
    /// against the JWKS served afterwards — zero failed verifications.
    rotation_under_load_fails_no_verification, |backend| async move {
    let (env, app) = crate::helpers::spawn_app(backend).await;
    let (id, secret) = env.create_client(&["--resource", "https://api.example.com", "--scope", "invoices:read"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url, id, secret, stop) = (app.http.clone(), app.url("/token"), id.clone(), secret.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || tokens.len() < 5 {
                let r = http.post(&url).basic_auth(&id, Some(&secret)).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
                assert_eq!(r.status(), 200);
                tokens.push(r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string());
            }
            tokens
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let out = env.cli(&["keys", "rotate", "--now"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The instance picks the new key up (a JWKS request re-reads the directory).
    let _ = app.jwks().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.extend(t.await.unwrap());
    }
    let kids: std::collections::HashSet<String> = tokens.iter().map(|t| jsonwebtoken::decode_header(t).unwrap().kid.unwrap()).collect();
    assert_eq!(kids.len(), 2, "tokens of both keys were issued during the burst");
    let jwks = app.jwks().await;
    let mut cfg = mandate::rs::RsConfig::new(&app.base, "https://api.example.com", "http://127.0.0.1:1");
    cfg.min_refetch = std::time::Duration::from_millis(0);
    let rs = mandate::rs::ResourceServer::new(cfg);
    let now = app.state.clock.now();
    let mut failed = 0;
    for t in &tokens {
        crate::helpers::verify(t, &jwks, &app.base, "https://api.example.com");
        if rs.validate(t, now).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "every token verifies across the rotation");
    app.stop().await;
});
