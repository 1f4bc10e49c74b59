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
