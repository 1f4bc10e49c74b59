//! Failed sign-in counters (SPEC §4), in the database so that every instance
//! throttles alike. A key counts consecutive failures; from the fifth on, it
//! is locked for a doubling delay capped at 15 minutes. A lock always ends,
//! and a success clears the account's counter.

use super::{Conn, StoreError};
use crate::on_conn;

/// Failures of one account from one address allowed before the first lock.
pub const FREE_FAILURES: i64 = 5;
/// Failures from one address (any account) allowed before it is locked:
/// higher, since many people may share an address.
pub const FREE_FAILURES_PER_ADDRESS: i64 = 20;
/// The first lock, doubled on each further failure.
pub const FIRST_LOCK_SECS: i64 = 30;
/// The longest lock: an attacker can slow a sign-in, never end it for good.
pub const MAX_LOCK_SECS: i64 = 15 * 60;
/// Failures older than this are forgotten.
pub const WINDOW_SECS: i64 = 60 * 60;

/// How long a key with `failures` consecutive failures stays locked, when
/// `free` failures are allowed before the first lock.
pub fn lock_secs(failures: i64, free: i64) -> i64 {
    if failures < free {
        return 0;
    }
    let doublings = (failures - free).min(20) as u32;
    (FIRST_LOCK_SECS.saturating_mul(1 << doublings)).min(MAX_LOCK_SECS)
}

/// Seconds until `key` may try again (0: now).
pub async fn locked_for(conn: impl Into<Conn<'_>>, key: &str, now: i64) -> Result<i64, StoreError> {
    let until: Option<i64> = on_conn!(conn, |c| sqlx::query_scalar(
        "SELECT locked_until FROM login_throttle WHERE key = $1"
    )
    .bind(key)
    .fetch_optional(c)
    .await)?;
    Ok(until.map_or(0, |u| (u - now).max(0)))
}

/// Counts a failure for `key` (which allows `free` failures) and returns the new count.
pub async fn fail(
    conn: impl Into<Conn<'_>> + Send,
    key: &str,
    free: i64,
    now: i64,
) -> Result<i64, StoreError> {
    let mut conn = conn.into();
    let failures: i64 = on_conn!(&mut conn, |c| sqlx::query_scalar(
        "INSERT INTO login_throttle (key, failures, last_failure_at, locked_until) \
         VALUES ($1, 1, $2, 0) \
         ON CONFLICT (key) DO UPDATE SET \
           failures = CASE WHEN login_throttle.last_failure_at < $3 THEN 1 \
                           ELSE login_throttle.failures + 1 END, \
           last_failure_at = $2 \
         RETURNING failures"
    )
    .bind(key)
    .bind(now)
    .bind(now - WINDOW_SECS)
    .fetch_one(c)
    .await)?;
    let lock = lock_secs(failures, free);
    if lock > 0 {
        on_conn!(&mut conn, |c| sqlx::query(
            "UPDATE login_throttle SET locked_until = $1 WHERE key = $2"
        )
        .bind(now + lock)
        .bind(key)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    }
    Ok(failures)
}

/// Clears `key` (a successful sign-in).
pub async fn clear(conn: impl Into<Conn<'_>>, key: &str) -> Result<(), StoreError> {
    on_conn!(conn, |c| sqlx::query(
        "DELETE FROM login_throttle WHERE key = $1"
    )
    .bind(key)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    //  * free attempts are not locked
    //  * the lock doubles
    //  * and is capped: never a permanent lockout
    #[test]
    fn locks_grow_and_are_capped() {
        assert_eq!(lock_secs(4, FREE_FAILURES), 0);
        assert_eq!(lock_secs(5, FREE_FAILURES), 30);
        assert_eq!(lock_secs(6, FREE_FAILURES), 60);
        assert_eq!(lock_secs(10, FREE_FAILURES), 15 * 60);
        assert_eq!(lock_secs(10_000, FREE_FAILURES), MAX_LOCK_SECS);
        assert_eq!(lock_secs(19, FREE_FAILURES_PER_ADDRESS), 0);
    }
}
