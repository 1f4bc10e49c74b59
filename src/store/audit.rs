//! The audit writer: durable, hash-chained, group-committed.
//!
//! Requests hand an event (and, for issuance, the token record) to one writer
//! task per process and wait for its commit. The task drains whatever is queued
//! into one transaction, so concurrent requests share one fsync (group commit)
//! and the response is sent only after its event is durable (SPEC §8).
//!
//! The transaction first bumps the single `audit_head` row. That row lock (a
//! write lock on SQLite) serialises writers of every instance sharing the
//! database, so the chain stays linear across a scaled-out deployment.

use std::sync::Arc;

use sqlx::FromRow;
use tokio::sync::{mpsc, oneshot};

use super::tokens::{self, NewToken};
use super::{Db, StoreError};
use crate::audit::{AuditEvent, Outcome};
use crate::metrics::Metrics;
use crate::{on_db, on_tx};

/// Most events committed in one transaction.
const MAX_BATCH: usize = 512;

struct Job {
    event: AuditEvent,
    token: Option<NewToken>,
    done: oneshot::Sender<Result<(), String>>,
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

    /// Records `event` durably (and `token`, in the same transaction).
    /// Returns once committed.
    pub async fn record(
        &self,
        event: AuditEvent,
        token: Option<NewToken>,
    ) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { event, token, done })
            .await
            .map_err(|_| StoreError::Unavailable("audit writer stopped".into()))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Unavailable(e)),
            Err(_) => Err(StoreError::Unavailable("audit writer stopped".into())),
        }
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
                    let mut batch = vec![job];
                    write_and_answer(&w, &mut batch).await;
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
        write_and_answer(&w, &mut batch).await;
    }
}

async fn write_and_answer(w: &Writer, batch: &mut Vec<Job>) {
    let started = std::time::Instant::now();
    let result = write_batch(&w.db, batch).await;
    if result.is_ok() {
        w.metrics.audit_events.inc_by(batch.len() as u64);
        w.metrics.audit_batch_size.observe(batch.len() as f64);
        w.metrics
            .audit_commit_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    let result = result.map_err(|e| {
        tracing::error!(error = %e, events = batch.len(), "audit batch failed; requests fail closed");
        e.to_string()
    });
    for job in batch.drain(..) {
        let _ = job.done.send(result.clone());
    }
}

async fn write_batch(db: &Db, batch: &mut [Job]) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let n = batch.len() as i64;
    let (last_seq, mut prev): (i64, String) = on_tx!(&mut tx, |c| sqlx::query_as(
        "UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash"
    )
    .bind(n)
    .fetch_one(c)
    .await)?;
    let first_seq = last_seq - n + 1;
    for job in batch.iter_mut() {
        job.event.seal(&prev);
        prev = job.event.hash.clone();
    }
    // One multi-row INSERT per table: a batch costs a handful of statements,
    // not two per request.
    insert_events(&mut tx, first_seq, batch).await?;
    let records: Vec<&NewToken> = batch.iter().filter_map(|j| j.token.as_ref()).collect();
    tokens::insert_many(&mut tx, &records).await?;
    on_tx!(&mut tx, |c| sqlx::query(
        "UPDATE audit_head SET hash = $1 WHERE id = 1"
    )
    .bind(&prev)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    tx.commit().await
}

const INSERT: &str = "INSERT INTO audit_events (seq, id, time, at, event, outcome, reason, \
    user_name, client_id, client_type, actor_chain, audience, scope_requested, scope_granted, \
    jti, parent_jti, acr, ip, request_id, prev_hash, hash) ";

async fn insert_events(
    tx: &mut super::Tx,
    first_seq: i64,
    batch: &[Job],
) -> Result<(), StoreError> {
    let rows: Vec<(i64, &AuditEvent, Option<String>)> = batch
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let chain = j.event.actor_chain.as_ref().map(|c| super::to_json_list(c));
            (first_seq + i as i64, &j.event, chain)
        })
        .collect();
    on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(INSERT);
        q.push_values(&rows, |mut b, (seq, e, chain)| {
            b.push_bind(*seq)
                .push_bind(&e.id)
                .push_bind(&e.time)
                .push_bind(e.at)
                .push_bind(&e.event)
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
        });
        q.build()
            .persistent(false)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
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
            id: r.id,
            time: r.time,
            at: r.at,
            event: r.event,
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
