//! The audit trail in the database: appending to the hash chain, and the
//! group-commit writer.
//!
//! [`append`] adds events (and the token records they describe) to the chain
//! inside a caller's transaction, so a decision and its event commit together
//! or not at all: redeeming a single-use value (a code, a refresh rotation, an
//! approval) calls it in the transaction of the redemption. The transaction
//! first bumps the single `audit_head` row; that row lock (a write lock on
//! SQLite) serialises writers of every instance sharing the database, so the
//! chain stays linear across a scaled-out deployment.
//!
//! [`AuditWriter`] is one caller of [`append`]: requests whose decision needs
//! no single-use fact (client credentials, refusals) hand it their event and
//! wait; it drains whatever is queued into one transaction, so concurrent
//! requests share one fsync (group commit) and each response is sent only
//! after its event is durable (SPEC §8). A batch that fails for a reason other
//! than an unreachable database is retried one event at a time, so one bad
//! entry never fails the requests that shared its batch.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use sqlx::FromRow;
use tokio::sync::{mpsc, oneshot};

use super::clients::{self, Client};
use super::tokens::{self, NewToken};
use super::{Db, StoreError, Tx};
use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::metrics::Metrics;
use crate::{on_db, on_tx};

/// Most events committed in one group commit, and most rows in one INSERT.
pub const MAX_BATCH: usize = 512;

/// The most bind parameters one statement may carry: SQLite's default
/// `SQLITE_MAX_VARIABLE_NUMBER` (32766 since 3.32; PostgreSQL allows 65535).
pub const MAX_BIND_PARAMS: usize = 32_766;

/// The columns of `audit_events`, in insert order; the INSERT is built from
/// this list and binds one value per column.
const EVENT_COLUMNS: [&str; 21] = [
    "seq",
    "id",
    "time",
    "at",
    "event",
    "outcome",
    "reason",
    "user_name",
    "client_id",
    "client_type",
    "actor_chain",
    "audience",
    "scope_requested",
    "scope_granted",
    "jti",
    "parent_jti",
    "acr",
    "ip",
    "request_id",
    "prev_hash",
    "hash",
];

// A multi-row INSERT can never exceed the bind-parameter limit: checked when
// the crate compiles, for both tables a batch writes.
const _: () = assert!(MAX_BATCH * EVENT_COLUMNS.len() <= MAX_BIND_PARAMS);
const _: () = assert!(MAX_BATCH * tokens::COLUMNS.len() <= MAX_BIND_PARAMS);

/// One audit event and, for an issuance, the token record it describes.
#[derive(Debug)]
pub struct Entry {
    pub event: AuditEvent,
    pub token: Option<NewToken>,
    /// Cached client rows the decision was made on ([`super::client_cache`]):
    /// the entry is written only if each is still the stored row, checked in
    /// the transaction that writes it ([`check_clients`]).
    pub clients: Vec<Arc<Client>>,
}

impl Entry {
    pub fn event(event: AuditEvent) -> Entry {
        Entry {
            event,
            token: None,
            clients: Vec::new(),
        }
    }
}

/// Refuses (with [`StoreError::ClientChanged`]) when a cached client row
/// that one of `entries` relies on is no longer the stored row. For a
/// transaction that appends them: call before [`append`].
pub async fn check_clients(tx: &mut Tx, entries: &[Entry]) -> Result<(), StoreError> {
    match stale(tx, entries).await?.into_iter().flatten().next() {
        Some(id) => Err(StoreError::ClientChanged(id)),
        None => Ok(()),
    }
}

/// For each entry, the first cached client row it relies on that is not
/// the stored row (changed in any column, or deleted), read in `tx`.
async fn stale(tx: &mut Tx, entries: &[Entry]) -> Result<Vec<Option<String>>, StoreError> {
    let ids: BTreeSet<&str> = entries
        .iter()
        .flat_map(|e| e.clients.iter().map(|c| c.client_id.as_str()))
        .collect();
    let stored = clients::get_many(tx, &ids).await?;
    Ok(entries
        .iter()
        .map(|e| {
            e.clients
                .iter()
                .find(|c| stored.get(&c.client_id) != Some(c.as_ref()))
                .map(|c| c.client_id.clone())
        })
        .collect())
}

/// Appends `entries` to the chain inside `tx`, with their token records. The
/// caller commits; until then nothing is visible and a rollback leaves the
/// chain as it was.
pub async fn append(tx: &mut Tx, entries: &mut [Entry]) -> Result<(), StoreError> {
    append_some(tx, &mut entries.iter_mut().collect::<Vec<_>>()).await
}

async fn append_some(tx: &mut Tx, entries: &mut [&mut Entry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let n = entries.len() as i64;
    let (last_seq, mut prev): (i64, String) = on_tx!(&mut *tx, |c| sqlx::query_as(
        "UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash"
    )
    .bind(n)
    .fetch_one(c)
    .await)?;
    let first_seq = last_seq - n + 1;
    for entry in entries.iter_mut() {
        entry.event.seal(&prev);
        prev = entry.event.hash.clone();
    }
    let entries: Vec<&Entry> = entries.iter().map(|e| &**e).collect();
    // Multi-row INSERTs: a batch costs a handful of statements, not two per request.
    for (i, chunk) in entries.chunks(MAX_BATCH).enumerate() {
        insert_events(tx, first_seq + (i * MAX_BATCH) as i64, chunk).await?;
        let records: Vec<&NewToken> = chunk.iter().filter_map(|e| e.token.as_ref()).collect();
        tokens::insert_many(tx, &records).await?;
    }
    on_tx!(&mut *tx, |c| sqlx::query(
        "UPDATE audit_head SET hash = $1 WHERE id = 1"
    )
    .bind(&prev)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Appends `entries` in a transaction of their own and commits, except
/// those whose cached client rows changed ([`Entry::clients`]): those are
/// left out, and named in the answer (one item per entry: the client whose
/// row changed, or `None` when written).
pub async fn commit(db: &Db, entries: &mut [Entry]) -> Result<Vec<Option<String>>, StoreError> {
    let mut tx = db.begin().await?;
    let refused = stale(&mut tx, entries).await?;
    let mut fresh: Vec<&mut Entry> = entries
        .iter_mut()
        .zip(&refused)
        .filter(|(_, refused)| refused.is_none())
        .map(|(e, _)| e)
        .collect();
    append_some(&mut tx, &mut fresh).await?;
    tx.commit().await?;
    Ok(refused)
}

fn insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| format!("INSERT INTO audit_events ({}) ", EVENT_COLUMNS.join(", ")))
}

/// Builds the multi-row INSERT for `rows` (at most [`MAX_BATCH`]).
fn build_insert<'a, DB: sqlx::Database>(
    first_seq: i64,
    rows: &'a [&'a Entry],
    chains: &'a [Option<String>],
) -> sqlx::QueryBuilder<'a, DB>
where
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    <DB as sqlx::Database>::Arguments<'a>: Default,
{
    let mut q = sqlx::QueryBuilder::new(insert_sql());
    q.push_values(
        rows.iter().zip(chains).enumerate(),
        |mut b, (i, (entry, chain))| {
            let e = &entry.event;
            b.push_bind(first_seq + i as i64)
                .push_bind(&e.id)
                .push_bind(&e.time)
                .push_bind(e.at)
                .push_bind(e.event.as_str())
                .push_bind(e.outcome.as_str())
                .push_bind(&e.reason)
                .push_bind(&e.user)
                .push_bind(&e.client_id)
                .push_bind(&e.client_type)
                .push_bind(chain)
                .push_bind(&e.audience)
                .push_bind(&e.scope_requested)
                .push_bind(&e.scope_granted)
                .push_bind(&e.jti)
                .push_bind(&e.parent_jti)
                .push_bind(&e.acr)
                .push_bind(&e.ip)
                .push_bind(&e.request_id)
                .push_bind(&e.prev_hash)
                .push_bind(&e.hash);
        },
    );
    q
}

async fn insert_events(tx: &mut Tx, first_seq: i64, rows: &[&Entry]) -> Result<(), StoreError> {
    let chains: Vec<Option<String>> = rows
        .iter()
        .map(|e| e.event.actor_chain.as_ref().map(|c| super::to_json_list(c)))
        .collect();
    on_tx!(tx, |c| build_insert(first_seq, rows, &chains)
        .build()
        .persistent(false)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Why a queued event was not committed, as the writer relays it.
#[derive(Clone, Debug)]
enum Failure {
    Unavailable(String),
    Failed(String),
    /// Left out: a cached client row it relied on changed.
    ClientChanged(String),
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> StoreError {
        match f {
            Failure::Unavailable(m) => StoreError::Unavailable(m),
            Failure::Failed(m) => StoreError::Failed(m),
            Failure::ClientChanged(id) => StoreError::ClientChanged(id),
        }
    }
}

impl From<&StoreError> for Failure {
    fn from(e: &StoreError) -> Failure {
        match e {
            StoreError::ClientChanged(id) => Failure::ClientChanged(id.clone()),
            e if e.is_unavailable() => Failure::Unavailable(e.to_string()),
            e => Failure::Failed(e.to_string()),
        }
    }
}

/// What a committed batch answers the request behind an entry.
fn answer(refused: Option<String>) -> Result<(), Failure> {
    match refused {
        Some(client_id) => Err(Failure::ClientChanged(client_id)),
        None => Ok(()),
    }
}

struct Job {
    entry: Entry,
    done: oneshot::Sender<Result<(), Failure>>,
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Job>,
}

impl AuditWriter {
    /// Starts the writer task. [`AuditTask::finish`] commits what is queued
    /// and stops it; later `record` calls fail (closed, never silently lost).
    pub fn spawn(db: Db, metrics: Arc<Metrics>) -> (AuditWriter, AuditTask) {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(run(Writer { db, metrics }, rx, stopped));
        (AuditWriter { tx }, AuditTask { stop, handle })
    }

    /// Records `entry` durably (event and token record in one transaction,
    /// shared with whatever else is queued). Returns once committed.
    pub async fn record(&self, entry: Entry) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("audit writer stopped".into());
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { entry, done })
            .await
            .map_err(|_| stopped())?;
        match wait.await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(stopped()),
        }
    }

    /// Whether the writer task still runs (readiness: an instance whose
    /// writer has stopped can issue nothing).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Events queued and not yet taken by the writer.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The running writer task.
pub struct AuditTask {
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl AuditTask {
    /// Commits every queued event, then stops the task.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.handle.await;
    }

    /// Aborts the task without committing (what a crash of the writer looks
    /// like to requests; tests use it to prove readiness and fail-closed).
    pub fn abort_handle(&self) -> tokio::task::AbortHandle {
        self.handle.abort_handle()
    }
}

struct Writer {
    db: Db,
    metrics: Arc<Metrics>,
}

async fn run(w: Writer, mut rx: mpsc::Receiver<Job>, mut stopped: oneshot::Receiver<()>) {
    loop {
        let first = tokio::select! {
            biased;
            job = rx.recv() => match job {
                Some(job) => job,
                None => return,
            },
            _ = &mut stopped => {
                // Refuse new work, then commit what is already queued.
                rx.close();
                while let Some(job) = rx.recv().await {
                    write_and_answer(&w, vec![job]).await;
                }
                return;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        write_and_answer(&w, batch).await;
    }
}

async fn write_and_answer(w: &Writer, batch: Vec<Job>) {
    let (mut entries, waiters): (Vec<Entry>, Vec<_>) =
        batch.into_iter().map(|j| (j.entry, j.done)).unzip();
    match timed_commit(w, &mut entries).await {
        Ok(refused) => {
            for (done, refused) in waiters.into_iter().zip(refused) {
                let _ = done.send(answer(refused));
            }
        }
        Err(e) if entries.len() > 1 && !e.is_unavailable() => {
            // Something in the batch was refused: commit each event alone so
            // only the entry at fault fails.
            tracing::warn!(error = %e, events = entries.len(), "audit batch refused; retrying one by one");
            for (entry, done) in entries.into_iter().zip(waiters) {
                let mut one = [entry];
                let result = match timed_commit(w, &mut one).await {
                    Ok(mut refused) => answer(refused.pop().flatten()),
                    Err(e) => {
                        tracing::error!(error = %e, "audit event not written; its request fails closed");
                        Err(Failure::from(&e))
                    }
                };
                let _ = done.send(result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, events = entries.len(), "audit batch failed; requests fail closed");
            let failure = Failure::from(&e);
            for done in waiters {
                let _ = done.send(Err(failure.clone()));
            }
        }
    }
}

async fn timed_commit(
    w: &Writer,
    entries: &mut [Entry],
) -> Result<Vec<Option<String>>, StoreError> {
    let started = std::time::Instant::now();
    let refused = commit(&w.db, entries).await?;
    let written = refused.iter().filter(|r| r.is_none()).count();
    w.metrics.audit_events.inc_by(written as u64);
    w.metrics.audit_batch_size.observe(written as f64);
    w.metrics
        .audit_commit_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(refused)
}

#[derive(FromRow)]
struct EventRow {
    id: String,
    time: String,
    at: i64,
    event: String,
    outcome: String,
    reason: Option<String>,
    user_name: Option<String>,
    client_id: Option<String>,
    client_type: Option<String>,
    actor_chain: Option<String>,
    audience: Option<String>,
    scope_requested: Option<String>,
    scope_granted: Option<String>,
    jti: Option<String>,
    parent_jti: Option<String>,
    acr: Option<String>,
    ip: Option<String>,
    request_id: Option<String>,
    prev_hash: String,
    hash: String,
}

impl TryFrom<EventRow> for AuditEvent {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<AuditEvent, StoreError> {
        Ok(AuditEvent {
            outcome: match r.outcome.as_str() {
                "success" => Outcome::Success,
                "failure" => Outcome::Failure,
                o => return Err(StoreError::Corrupt(format!("audit_events.outcome: {o}"))),
            },
            actor_chain: r
                .actor_chain
                .as_deref()
                .map(|t| super::from_json_list("audit_events.actor_chain", t))
                .transpose()?,
            event: EventKind::parse(&r.event)
                .ok_or_else(|| StoreError::Corrupt(format!("audit_events.event: {}", r.event)))?,
            id: r.id,
            time: r.time,
            at: r.at,
            reason: r.reason,
            user: r.user_name,
            client_id: r.client_id,
            client_type: r.client_type,
            audience: r.audience,
            scope_requested: r.scope_requested,
            scope_granted: r.scope_granted,
            jti: r.jti,
            parent_jti: r.parent_jti,
            acr: r.acr,
            ip: r.ip,
            request_id: r.request_id,
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
    }
}

/// Filters for [`list`]; `None` matches everything.
#[derive(Debug, Default)]
pub struct Filter {
    pub user: Option<String>,
    pub client_id: Option<String>,
    pub since: Option<i64>,
}

const SELECT: &str =
    "SELECT id, time, at, event, outcome, reason, user_name, client_id, client_type, \
    actor_chain, audience, scope_requested, scope_granted, jti, parent_jti, acr, ip, request_id, \
    prev_hash, hash FROM audit_events";

/// Events matching `f`, oldest first.
pub async fn list(db: &Db, f: &Filter) -> Result<Vec<AuditEvent>, StoreError> {
    let sql = format!(
        "{SELECT} WHERE ($1 IS NULL OR user_name = $1) AND ($2 IS NULL OR client_id = $2) \
         AND ($3 IS NULL OR at >= $3) ORDER BY seq"
    );
    let rows: Vec<EventRow> = on_db!(db, |p| sqlx::query_as(&sql)
        .bind(&f.user)
        .bind(&f.client_id)
        .bind(f.since)
        .fetch_all(p)
        .await)?;
    rows.into_iter().map(AuditEvent::try_from).collect()
}

/// The whole chain in order and the recorded head hash.
pub async fn chain(db: &Db) -> Result<(Vec<AuditEvent>, String), StoreError> {
    let sql = format!("{SELECT} ORDER BY seq");
    let rows: Vec<EventRow> = on_db!(db, |p| sqlx::query_as(&sql).fetch_all(p).await)?;
    let head: (String,) = on_db!(db, |p| sqlx::query_as(
        "SELECT hash FROM audit_head WHERE id = 1"
    )
    .fetch_one(p)
    .await)?;
    let events = rows
        .into_iter()
        .map(AuditEvent::try_from)
        .collect::<Result<_, _>>()?;
    Ok((events, head.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The INSERT binds exactly one parameter per listed column and row.
    #[test]
    fn insert_binds_one_parameter_per_column() {
        let rows: Vec<Entry> = (0..3)
            .map(|i| Entry::event(AuditEvent::new(EventKind::TokenIssued, Outcome::Success, i)))
            .collect();
        let chains = vec![None; rows.len()];
        let rows: Vec<&Entry> = rows.iter().collect();
        let q = build_insert::<sqlx::Sqlite>(1, &rows, &chains);
        // sqlx writes `?` placeholders for SQLite (`$n` for PostgreSQL).
        let placeholders = q.sql().matches(['?', '$']).count();
        assert_eq!(placeholders, rows.len() * EVENT_COLUMNS.len());
    }
}
