//! Signing in (SPEC §4): passwords, throttling and sessions. No HTTP types.
//!
//! Argon2id runs on the blocking pool, never on the async workers, and an
//! unknown username is checked against a dummy hash so that it costs the same
//! time as a known one. Failures are counted per (account, address) and per
//! address, in the database (every instance throttles alike); locks grow and
//! are capped, so an attacker can slow a person down but never lock them out
//! for good — and cannot lock them out at all from another address.

use std::sync::OnceLock;

use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::secret;
use crate::state::AppState;
use crate::store::audit::{self as audit_store, Entry};
use crate::store::login_throttle::{self, FREE_FAILURES, FREE_FAILURES_PER_ADDRESS};
use crate::store::sessions::{self, Login, Session};
use crate::store::users;
use crate::store::StoreError;

/// How long a browser session lives.
pub const SESSION_TTL_SECS: i64 = 12 * 60 * 60;

/// The outcome of a sign-in attempt, with the message the page shows.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    Success(Login),
    /// Wrong username or password (the page does not say which).
    Failed,
    /// This account is disabled (said only to someone who knew the password).
    Disabled,
    /// Too many failures: try again in this many seconds.
    Throttled(i64),
}

impl Attempt {
    pub fn message(&self) -> String {
        match self {
            Attempt::Success(_) => String::new(),
            Attempt::Failed => "Incorrect username or password.".into(),
            Attempt::Disabled => "This account is disabled. Ask your administrator.".into(),
            Attempt::Throttled(secs) => {
                let minutes = (secs + 59) / 60;
                if *secs < 60 {
                    format!("Too many failed sign-in attempts. Try again in {secs} seconds.")
                } else {
                    format!("Too many failed sign-in attempts. Try again in {minutes} minutes.")
                }
            }
        }
    }
}

/// An Argon2id hash of nothing in particular, verified when the user does not
/// exist so the answer takes as long as for a real account.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        secret::hash_password(&secret::random_token()).unwrap_or_else(|_| {
            "$argon2id$v=19$m=7168,t=5,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG".into()
        })
    })
}

/// Bounds concurrent password hashing to the cores available.
fn hashing() -> &'static tokio::sync::Semaphore {
    static PERMITS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

fn keys(username: &str, ip: &str) -> (String, String) {
    (format!("acct:{username}|ip:{ip}"), format!("ip:{ip}"))
}

/// Checks `username` / `password` from `ip`, counts failures, and records
/// the `login` event in the same transaction as the counters.
pub async fn attempt(
    app: &AppState,
    username: &str,
    password: &str,
    mut audit: AuditEvent,
    now: i64,
) -> Result<Attempt, StoreError> {
    let ip = audit.ip.clone().unwrap_or_default();
    let (account_key, address_key) = keys(username, &ip);
    let wait = login_throttle::locked_for(&app.db, &account_key, now)
        .await?
        .max(login_throttle::locked_for(&app.db, &address_key, now).await?);
    audit.user = Some(
        crate::text::escape_unsafe(username)
            .chars()
            .take(128)
            .collect(),
    );
    let outcome = if wait > 0 {
        Attempt::Throttled(wait)
    } else {
        let user = users::by_username(&app.db, username).await?;
        let phc = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| dummy_hash().to_string());
        let password = password.to_string();
        // At most one Argon2 hash per core at a time: a burst of sign-ins
        // waits here instead of holding ARGON2_MEMORY_KIB each on up to
        // 512 blocking threads.
        let ok = match hashing().acquire().await {
            Ok(_permit) => {
                tokio::task::spawn_blocking(move || secret::verify_password(&password, &phc))
                    .await
                    .unwrap_or(false)
            }
            Err(_) => false,
        };
        match user {
            Some(u) if ok && u.disabled_at.is_none() => Attempt::Success(Login {
                user_id: u.id,
                username: u.username,
                auth_time: now,
                acr: super::authorize::ACR_PWD.into(),
                amr: vec!["pwd".into()],
            }),
            Some(u) if ok && u.disabled_at.is_some() => Attempt::Disabled,
            _ => Attempt::Failed,
        }
    };
    let mut tx = app.db.begin().await?;
    match &outcome {
        Attempt::Success(_) => {
            audit.event = EventKind::Login;
            audit.outcome = Outcome::Success;
            audit.acr = Some(super::authorize::ACR_PWD.into());
            login_throttle::clear(&mut tx, &account_key).await?;
        }
        Attempt::Failed => {
            audit.reason = Some("wrong username or password".into());
            login_throttle::fail(&mut tx, &account_key, FREE_FAILURES, now).await?;
            login_throttle::fail(&mut tx, &address_key, FREE_FAILURES_PER_ADDRESS, now).await?;
        }
        Attempt::Disabled => audit.reason = Some("the account is disabled".into()),
        Attempt::Throttled(secs) => {
            audit.reason = Some(format!("throttled: too many failures, locked for {secs} s"))
        }
    }
    audit_store::append(&mut tx, &mut [Entry::event(audit)]).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// A new session: its raw id (for the cookie only) and its row.
pub fn new_session(login: Option<Login>, now: i64) -> (String, Session) {
    let raw = secret::random_token();
    let session = Session {
        id_hash: secret::hash(&raw),
        csrf: secret::random_token(),
        login,
        created_at: now,
        expires_at: now + SESSION_TTL_SECS,
    };
    (raw, session)
}

/// Starts a signed-in session in place of `old` (the session id changes at
/// login, against fixation); pending authorization requests move along.
pub async fn rotate(
    app: &AppState,
    old: Option<&Session>,
    login: Login,
    now: i64,
) -> Result<(String, Session), StoreError> {
    let (raw, session) = new_session(Some(login), now);
    let mut tx = app.db.begin().await?;
    sessions::insert(&mut tx, &session).await?;
    if let Some(old) = old {
        sessions::move_requests(&mut tx, &old.id_hash, &session.id_hash).await?;
        sessions::delete(&mut tx, &old.id_hash).await?;
    }
    tx.commit().await?;
    Ok((raw, session))
}

/// A `login` audit event with the request's context.
pub fn event(ip: Option<String>, request_id: Option<String>, now: i64) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Login, Outcome::Failure, now);
    e.ip = ip;
    e.request_id = request_id;
    e
}
