//! Restarting loses nothing: clients, users, keys and audit events survive.

use crate::both;
use crate::helpers::{spawn_app, start, verify};

const API: &str = "https://api.example.com";

both!(
    restart_keeps_clients_users_keys_and_audit,
    |backend| async move {
        let (env, app) = spawn_app(backend).await;
        let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
        env.create_user("alice", "a long password", &[]);
        let token = app.cc_token(&id, &secret).await;
        let kids_before = app.jwks().await;
        let first_issuer = app.base.clone();
        app.stop().await;

        // Step 2 - a new process on the same database and keys directory
        let app = start(&env).await;
        assert_eq!(app.jwks().await, kids_before, "the same keys are served");
        verify(&token, &app.jwks().await, &first_issuer, API);
        let again = app.cc_token(&id, &secret).await;
        assert_eq!(
            jsonwebtoken::decode_header(&again).unwrap().kid,
            jsonwebtoken::decode_header(&token).unwrap().kid
        );
        let users = env.cli_json(&["user", "list", "--json"]);
        assert_eq!(users[0]["username"], "alice");
        // Token decisions only: the operator's `client create` and `user create`
        // are events too.
        let lines = env.token_events();
        assert_eq!(
            lines.len(),
            2,
            "the event from before the restart is still there"
        );
        assert!(env.cli(&["audit", "verify"]).status.success());
        app.stop().await;
    }
);
