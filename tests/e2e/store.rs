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
