//! Durability: an answered token request is on disk before its answer leaves,
//! even when the process is killed without warning (SIGKILL) mid-load.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::both;
use crate::helpers::{free_port, jti_of, Env, CONFIG};

const API: &str = "https://api.example.com";

/// Concurrent request loops while the server runs.
const WORKERS: usize = 16;
/// Tokens to receive before the kill (or stop waiting after `LOAD_FOR`).
const TARGET: usize = 200;
const LOAD_FOR: Duration = Duration::from_secs(15);

both!(
    /// Every token a client received under load has its `token.issued` event
    /// and its token record in the database after a SIGKILL, the chain
    /// verifies, and the server restarts on that database and issues again.
    sigkill_under_load_loses_no_answered_token,
    |backend| async move {
        let env = Env::new(backend, CONFIG).await;
        let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
        let log = env.dir().join("serve.log");
        let mut server = env.serve_process(free_port(), &[], &[], &log).await;

        // Step 1 - 16 loops of client-credentials requests
        let received = Arc::new(Mutex::new(Vec::<String>::new()));
        let killed = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            let (http, url, id, secret) =
                (http.clone(), format!("{}/token", server.base), id.clone(), secret.clone());
            let (received, killed) = (received.clone(), killed.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let sent = http
                        .post(&url)
                        .basic_auth(&id, Some(&secret))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await;
                    let resp = match sent {
                        Ok(r) => r,
                        // The server is gone: this loop is done.
                        Err(_) => return,
                    };
                    let status = resp.status();
                    let body: Result<Value, _> = resp.json().await;
                    match (status.as_u16(), body) {
                        (200, Ok(v)) => {
                            let token = v["access_token"].as_str().unwrap().to_string();
                            received.lock().unwrap().push(token);
                        }
                        // Cut off mid-body by the kill: not a received token.
                        (_, Err(_)) => return,
                        (s, Ok(v)) => assert!(
                            killed.load(Ordering::SeqCst),
                            "refused under load before the kill: {s} {v}"
                        ),
                    }
                }
            }));
        }

        // Step 2 - SIGKILL with requests in flight
        let started = Instant::now();
        while received.lock().unwrap().len() < TARGET && started.elapsed() < LOAD_FOR {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        killed.store(true, Ordering::SeqCst);
        server.child.kill().unwrap(); // SIGKILL on unix
        server.child.wait().unwrap();
        for w in workers {
            tokio::time::timeout(Duration::from_secs(20), w)
                .await
                .expect("a request loop did not end after the kill")
                .unwrap();
        }
        let tokens = received.lock().unwrap().clone();
        assert!(
            !tokens.is_empty(),
            "no token before the kill: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let jtis: HashSet<String> = tokens.iter().map(|t| jti_of(t)).collect();
        assert_eq!(jtis.len(), tokens.len(), "a jti was issued twice");

        // Step 3 - every answered token is in the audit trail and in `tokens`
        let audited: HashSet<String> = env
            .audit_events()
            .iter()
            .filter(|e| e["event"] == "token.issued")
            .map(|e| e["jti"].as_str().unwrap().to_string())
            .collect();
        let db = env.connect_db().await;
        let stored: Vec<String> = mandate::on_db!(&db, |p| sqlx::query_scalar("SELECT jti FROM tokens")
            .fetch_all(p)
            .await
            .unwrap());
        db.close().await;
        let stored: HashSet<String> = stored.into_iter().collect();
        let unaudited: Vec<&String> = jtis.difference(&audited).collect();
        assert!(unaudited.is_empty(), "{} answered tokens have no token.issued event: {unaudited:?}", unaudited.len());
        let unstored: Vec<&String> = jtis.difference(&stored).collect();
        assert!(unstored.is_empty(), "{} answered tokens have no record: {unstored:?}", unstored.len());
        let out = env.cli(&["audit", "verify"]);
        assert!(out.status.success(), "chain broken by the kill: {}", String::from_utf8_lossy(&out.stderr));

        // Step 4 - a restart on the same database serves and keeps the chain
        let server = env.serve_process(free_port(), &[], &[], &env.dir().join("serve2.log")).await;
        let r = reqwest::Client::new()
            .post(format!("{}/token", server.base))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        server.stop();
        let out = env.cli(&["audit", "verify"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
);
