//! Store properties that must hold across instances: single-use facts are
//! decided by the database, not by process memory.

use mandate::store::{replay, StoreError};

use crate::both;
use crate::helpers::spawn_app;

both!(
    /// A single-use value is accepted once, even by racing writers.
    single_use_is_enforced_by_the_database,
    |backend| async move {
        let (_env, app) = spawn_app(backend).await;
        let db = app.state.db.clone();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move { replay::remember(&db, "assertion_jti", "jti-1", 2_000_000_000).await }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ok += 1,
                Err(StoreError::Conflict) => {}
                Err(e) => panic!("unexpected store error: {e}"),
            }
        }
        assert_eq!(ok, 1, "exactly one writer wins");
        // Another kind with the same value is a different fact.
        replay::remember(&db, "dpop_jti", "jti-1", 2_000_000_000).await.unwrap();
        // Expired facts are purged; the value may then be remembered again.
        replay::remember(&db, "old", "v", 10).await.unwrap();
        assert_eq!(replay::purge_expired(&db, 11).await.unwrap(), 1);
        replay::remember(&db, "old", "v", 20).await.unwrap();
        app.stop().await;
    }
);

use mandate::audit::{AuditEvent, EventKind, Outcome};
use mandate::store::audit::{self as audit_store, Entry};
use mandate::store::tokens::NewToken;

fn event(kind: EventKind, jti: &str) -> AuditEvent {
    let mut e = AuditEvent::new(kind, Outcome::Success, 1_800_000_000);
    e.jti = Some(jti.to_string());
    e
}

fn record(jti: &str) -> NewToken {
    NewToken {
        jti: jti.into(),
        client_id: "c".into(),
        subject: "s".into(),
        audience: "https://api.example.com".into(),
        scope: "invoices:read".into(),
        parent_jti: None,
        grant_id: None,
        issued_at: 1_800_000_000,
        expires_at: 1_800_000_300,
        token_hash: mandate::secret::hash(jti),
    }
}

both!(
    /// Redeeming a single-use value and its audit event commit together or
    /// not at all: racing redeemers each run the redemption and the event in
    /// one transaction; exactly one commits, and only its event exists.
    redemption_and_its_event_commit_together,
    |backend| async move {
        let (env, app) = spawn_app(backend).await;
        let db = app.state.db.clone();
        let before = app.count("audit_events").await;

        // Step 1 - a rolled-back transaction leaves neither the fact nor the event
        let mut tx = db.begin().await.unwrap();
        replay::remember(&mut tx, "code", "c-0", 2_000_000_000).await.unwrap();
        audit_store::append(&mut tx, &mut [Entry::event(event(EventKind::TokenIssued, "j-0"))]).await.unwrap();
        drop(tx);
        assert_eq!(app.count("audit_events").await, before);
        assert_eq!(app.count("used_once").await, 0);

        // Step 2 - 8 racing redeemers of one value
        let mut tasks = Vec::new();
        for i in 0..8 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = db.begin().await?;
                replay::remember(&mut tx, "code", "c-1", 2_000_000_000).await?;
                let jti = format!("j-{i}");
                audit_store::append(&mut tx, &mut [Entry { event: event(EventKind::TokenIssued, &jti), token: Some(record(&jti)), clients: Vec::new() }]).await?;
                tx.commit().await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => won += 1,
                Err(StoreError::Conflict) => {}
                Err(e) => panic!("unexpected store error: {e}"),
            }
        }
        assert_eq!(won, 1, "exactly one redemption commits");
        assert_eq!(app.count("audit_events").await, before + 1, "only the winner's event exists");
        assert_eq!(app.count("tokens").await, 1);

        // Step 3 - the chain is one valid chain
        let out = env.cli(&["audit", "verify"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        app.stop().await;
    }
);

both!(
    /// One refused entry never fails the requests sharing its group commit.
    a_conflict_fails_only_its_own_request,
    |backend| async move {
        let (env, app) = spawn_app(backend).await;
        let writer = app.state.audit.clone();
        writer.record(Entry { event: event(EventKind::TokenIssued, "dup"), token: Some(record("dup")), clients: Vec::new() }).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..32 {
            let writer = writer.clone();
            // Entry 7 reuses a jti: its token record conflicts.
            let jti = if i == 7 { "dup".to_string() } else { format!("t-{i}") };
            tasks.push(tokio::spawn(async move {
                writer.record(Entry { event: event(EventKind::TokenIssued, &jti), token: Some(record(&jti)), clients: Vec::new() }).await
            }));
        }
        let results: Vec<_> = futures_join(tasks).await;
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_ok(), i != 7, "entry {i}: {r:?}");
        }
        assert_eq!(app.count("tokens").await, 32);
        let out = env.cli(&["audit", "verify"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        app.stop().await;
    }
);

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

both!(
    /// An entry decided on a cached client row that no longer matches the
    /// stored one is left out of its group commit (and its request told);
    /// the rest of the batch commits and the chain stays whole.
    a_stale_client_row_fails_only_its_own_entry,
    |backend| async move {
        let (env, app) = spawn_app(backend).await;
        let (id, _) = env.create_client(&["--resource", "https://api.example.com", "--scope", "invoices:read"]);
        let stored = std::sync::Arc::new(mandate::store::clients::get(&app.state.db, &id).await.unwrap().unwrap());
        let mut stale = (*stored).clone();
        stale.secret_hash = Some(mandate::secret::hash("the secret before a rotation"));
        let stale = std::sync::Arc::new(stale);
        let writer = app.state.audit.clone();
        let before = app.count("tokens").await;
        let mut tasks = Vec::new();
        for i in 0..24 {
            let writer = writer.clone();
            let row = if i % 8 == 3 { stale.clone() } else { stored.clone() };
            tasks.push(tokio::spawn(async move {
                let jti = format!("c-{i}");
                writer.record(Entry { event: event(EventKind::TokenIssued, &jti), token: Some(record(&jti)), clients: vec![row] }).await
            }));
        }
        let results = futures_join(tasks).await;
        for (i, r) in results.iter().enumerate() {
            match r {
                Err(StoreError::ClientChanged(c)) => assert!(i % 8 == 3 && c == &id, "entry {i}: {r:?}"),
                Ok(()) => assert!(i % 8 != 3, "entry {i} was written on a stale row"),
                Err(e) => panic!("entry {i}: {e}"),
            }
        }
        assert_eq!(app.count("tokens").await, before + 21);
        let out = env.cli(&["audit", "verify"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        app.stop().await;
    }
);
