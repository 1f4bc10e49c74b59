//! Operator commands (SPEC §10): clients, users, keys, audit.

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::{fail, CliError};
use secrecy::ExposeSecret;

use crate::audit::{rfc3339, verify_chain, AuditEvent, EventKind, Outcome};
use crate::config::{Config, RegistrationMode};
use crate::keys::KeyRing;
use crate::oauth::clients::{operator_client, ClientSpec};
use crate::secret;
use crate::state::Clock;
use crate::store::audit::{self as audit_store, Entry, Filter};
use crate::store::clients::{self, Client};
use crate::store::registration_tokens;
use crate::store::users::{self, User};
use crate::store::{Db, Open, StoreError, Tx};

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum ClientCmd {
    /// Register a client; prints its id and (confidential clients) its secret, once.
    Create {
        #[arg(long)]
        name: String,
        /// Public client (no secret; PKCE).
        #[arg(long)]
        public: bool,
        #[arg(long, value_name = "ai-agent|service|web|native")]
        client_type: Option<String>,
        /// Choose the client id instead of a generated one.
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        #[arg(long = "resource", value_name = "ID")]
        resources: Vec<String>,
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
        #[arg(long = "owns-resource", value_name = "ID")]
        owns_resources: Vec<String>,
        #[arg(long = "exchange-to", value_name = "ID")]
        exchange_to: Vec<String>,
        #[arg(long)]
        dpop: bool,
        #[arg(long, value_name = "URI", conflicts_with = "jwks_file")]
        jwks_uri: Option<String>,
        #[arg(long, value_name = "PATH")]
        jwks_file: Option<PathBuf>,
    },
    /// List clients.
    List,
    /// Show one client.
    Show { id: String },
    /// Delete a client.
    Delete { id: String },
    /// Issue a new secret (the old one stops working at once).
    RotateSecret { id: String },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user; the password is read from standard input.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long)]
        email: Option<String>,
    },
    /// List users.
    List,
    /// Disable a user: they can no longer sign in.
    Disable { username: String },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// List signing keys and their status.
    List,
    /// Add a new signing key (published at once; signs after activation_delay_secs).
    Rotate {
        /// Sign with the new key at once.
        #[arg(long)]
        now: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Print audit events, oldest first.
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        client: Option<String>,
        /// RFC 3339 time, e.g. 2026-12-01T00:00:00Z.
        #[arg(long)]
        since: Option<String>,
    },
    /// Check the hash chain; exits non-zero naming the first broken event.
    Verify,
}

#[derive(Subcommand, Debug)]
pub enum RegistrationTokenCmd {
    /// Create a single-use initial access token for `POST /register`; prints
    /// it once (only its hash is stored).
    Create {
        /// Seconds until the token expires (1 to 31536000).
        #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
        expires_in: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Check an access token against the published keys in keys_dir: ES256
    /// signature, `typ`, `iss` and `exp`; prints its claims.
    Verify { token: String },
}

pub async fn token(config: Config, cmd: TokenCmd, json: bool) -> Result<(), CliError> {
    let TokenCmd::Verify { token } = cmd;
    let now = Clock::default().now();
    let ring = KeyRing::open_existing(&config.keys_dir)?;
    let claims = crate::oauth::access_token::validate(&ring, &config.issuer, token.trim(), now)
        .map_err(|why| fail(format!("invalid token: {why}")))?;
    let exp = claims.exp;
    if json {
        print_json(&json!({"valid": true, "claims": claims}));
    } else {
        println!(
            "valid: signed by this issuer's key, typ at+jwt, expires in {} s",
            exp - now
        );
        println!("{}", serde_json::to_string_pretty(&claims)?);
    }
    Ok(())
}

/// `mandate registration-token create`: a 256-bit initial access token (RFC
/// 7591 §3) for registration mode `token`, single-use, stored as SHA-256 and
/// audited (without the token) in the same transaction.
pub async fn registration_token(
    config: Config,
    cmd: RegistrationTokenCmd,
    json: bool,
) -> Result<(), CliError> {
    let RegistrationTokenCmd::Create { expires_in } = cmd;
    let now = Clock::default().now();
    let expires_at = now + expires_in as i64;
    let token = secret::random_token();
    let db = open_db(&config).await?;
    let mut tx = db.begin().await?;
    registration_tokens::insert(&mut tx, &secret::hash(&token), expires_at, now).await?;
    let mut event = operator_event(
        EventKind::RegistrationTokenCreated,
        "registration-token create",
        now,
    );
    event.reason = Some(format!(
        "operator: mandate registration-token create: expires {}",
        rfc3339(expires_at)
    ));
    commit_with(tx, event).await?;
    db.close().await;
    if config.registration.mode != RegistrationMode::Token {
        eprintln!(
            "mandate: note: [registration] mode is not \"token\"; /register does not ask for this token"
        );
    }
    if json {
        print_json(&json!({"token": token, "expires_at": expires_at}));
    } else {
        println!("initial access token: {token}");
        println!(
            "single use, expires {}; shown once, stored only as a hash",
            rfc3339(expires_at)
        );
    }
    Ok(())
}

/// The database for a command that changes it: created and migrated if needed.
async fn open_db(config: &Config) -> Result<Db, CliError> {
    let db = Db::connect(config.database_url.expose()).await?;
    db.migrate().await?;
    Ok(db)
}

/// The database for a read-only command: it must exist and be migrated;
/// nothing is created or changed.
async fn open_db_read_only(config: &Config) -> Result<Db, CliError> {
    Ok(Db::open(config.database_url.expose(), Open::Existing).await?)
}

/// The audit event of an operator action (SPEC §10): made at the terminal,
/// so no ip, request id or client authentication; `reason` names the command.
pub(crate) fn operator_event(kind: EventKind, command: &str, now: i64) -> AuditEvent {
    let mut e = AuditEvent::new(kind, Outcome::Success, now);
    e.reason = Some(format!("operator: mandate {command}"));
    e
}

/// Appends `event` to the chain in `tx` and commits: the change and its
/// event land together or not at all.
pub(crate) async fn commit_with(mut tx: Tx, event: AuditEvent) -> Result<(), CliError> {
    audit_store::append(&mut tx, &mut [Entry::event(event)]).await?;
    tx.commit().await?;
    Ok(())
}

fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

fn client_json(c: &Client, secret: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let (Some(s), Some(map)) = (secret, v.as_object_mut()) {
        map.insert("client_secret".into(), json!(s));
    }
    v
}

fn client_text(c: &Client) -> String {
    format!(
        "{}  {}  type={}  {}  grants={}  resources={}  scopes={}",
        c.client_id,
        c.name,
        c.client_type,
        if c.public { "public" } else { "confidential" },
        c.grant_types
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(","),
        c.resources.join(","),
        c.scopes.join(","),
    )
}

pub async fn client(config: Config, cmd: ClientCmd, json: bool) -> Result<(), CliError> {
    let now = Clock::default().now();
    let db = match cmd {
        ClientCmd::List | ClientCmd::Show { .. } => open_db_read_only(&config).await?,
        _ => open_db(&config).await?,
    };
    match cmd {
        ClientCmd::Create {
            name,
            public,
            client_type,
            client_id,
            grants,
            redirect_uris,
            resources,
            scopes,
            owns_resources,
            exchange_to,
            dpop,
            jwks_uri,
            jwks_file,
        } => {
            let jwks = match jwks_file {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .map_err(|e| fail(format!("--jwks-file {}: {e}", p.display())))?;
                    Some(
                        serde_json::from_str(&text)
                            .map_err(|e| fail(format!("--jwks-file {}: {e}", p.display())))?,
                    )
                }
                None => None,
            };
            let spec = ClientSpec {
                client_id,
                name,
                public,
                client_type,
                grants,
                redirect_uris,
                resources,
                scopes,
                owns_resources,
                exchange_to,
                dpop,
                jwks_uri,
                jwks,
            };
            // Without any configured resource, the demo's (SPEC §1's example)
            // are the ones `serve --demo` serves: clients for the demo can name them.
            let mut config = config.clone();
            if config.resources.is_empty() {
                config.resources =
                    super::serve::demo_resources(config.tokens.access_token_ttl_secs);
            }
            let (client, secret) = operator_client(&config, spec, now).map_err(fail)?;
            let mut tx = db.begin().await?;
            match clients::insert(&mut tx, &client).await {
                Err(StoreError::Conflict) => {
                    return Err(fail(format!(
                        "client `{}` already exists",
                        client.client_id
                    )))
                }
                r => r?,
            }
            let mut event = operator_event(EventKind::ClientCreated, "client create", now);
            event.client_id = Some(client.client_id.clone());
            event.client_type = Some(client.client_type.as_str().into());
            event.scope_granted = Some(client.scopes.join(" ")).filter(|s| !s.is_empty());
            commit_with(tx, event).await?;
            let secret = secret.as_ref().map(|s| s.expose_secret());
            if json {
                print_json(&client_json(&client, secret));
            } else {
                println!("created {}", client_text(&client));
                if let Some(s) = secret {
                    println!("client_secret: {s}  (shown once; stored only as a hash)");
                }
            }
        }
        ClientCmd::List => {
            let all = clients::list(&db).await?;
            if json {
                print_json(&json!(all
                    .iter()
                    .map(|c| client_json(c, None))
                    .collect::<Vec<_>>()));
            } else {
                for c in &all {
                    println!("{}", client_text(c));
                }
            }
        }
        ClientCmd::Show { id } => {
            let c = clients::get(&db, &id)
                .await?
                .ok_or_else(|| fail(format!("no client `{id}`")))?;
            if json {
                print_json(&client_json(&c, None));
            } else {
                println!("{}", client_text(&c));
            }
        }
        ClientCmd::Delete { id } => {
            let mut tx = db.begin().await?;
            match clients::delete(&mut tx, &id).await {
                Err(StoreError::NotFound) => return Err(fail(format!("no client `{id}`"))),
                r => r?,
            }
            let mut event = operator_event(EventKind::ClientDeleted, "client delete", now);
            event.client_id = Some(id.clone());
            commit_with(tx, event).await?;
            if json {
                print_json(&json!({"deleted": id}));
            } else {
                println!("deleted {id}");
            }
        }
        ClientCmd::RotateSecret { id } => {
            let s = secret::random_token();
            let mut tx = db.begin().await?;
            match clients::set_secret_hash(&mut tx, &id, &secret::hash(&s), now).await {
                Err(StoreError::NotFound) => {
                    return Err(fail(format!("no confidential client `{id}`")))
                }
                r => r?,
            }
            let mut event =
                operator_event(EventKind::ClientSecretRotated, "client rotate-secret", now);
            event.client_id = Some(id.clone());
            commit_with(tx, event).await?;
            if json {
                print_json(&json!({"client_id": id, "client_secret": s}));
            } else {
                println!("client_secret: {s}  (shown once; the old secret no longer works)");
            }
        }
    }
    db.close().await;
    Ok(())
}

fn user_json(u: &User) -> serde_json::Value {
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "disabled": u.disabled_at.is_some(),
        "created_at": u.created_at,
    })
}

pub async fn user(config: Config, cmd: UserCmd, json: bool) -> Result<(), CliError> {
    let now = Clock::default().now();
    let db = match cmd {
        UserCmd::List => open_db_read_only(&config).await?,
        _ => open_db(&config).await?,
    };
    match cmd {
        UserCmd::Create {
            username, email, ..
        } => {
            if username.is_empty()
                || username.len() > 128
                || username
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(fail(
                    "--username must be 1 to 128 characters without spaces",
                ));
            }
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .map_err(|e| fail(format!("cannot read the password from stdin: {e}")))?;
            let password = password.strip_suffix('\n').unwrap_or(&password);
            let password = password.strip_suffix('\r').unwrap_or(password);
            if password.chars().count() < 8 {
                return Err(fail("the password must be at least 8 characters"));
            }
            let user = User {
                id: uuid::Uuid::new_v4().to_string(),
                username,
                email,
                password_hash: secret::hash_password(password).map_err(|e| fail(e.to_string()))?,
                disabled_at: None,
                created_at: now,
            };
            let mut tx = db.begin().await?;
            match users::insert(&mut tx, &user).await {
                Err(StoreError::Conflict) => {
                    return Err(fail(format!("user `{}` already exists", user.username)))
                }
                r => r?,
            }
            let mut event = operator_event(EventKind::UserCreated, "user create", now);
            event.user = Some(user.username.clone());
            commit_with(tx, event).await?;
            if json {
                print_json(&user_json(&user));
            } else {
                println!("created user {} ({})", user.username, user.id);
            }
        }
        UserCmd::List => {
            let all = users::list(&db).await?;
            if json {
                print_json(&json!(all.iter().map(user_json).collect::<Vec<_>>()));
            } else {
                for u in &all {
                    let state = if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    };
                    println!(
                        "{}  {}  {}",
                        u.username,
                        u.email.as_deref().unwrap_or("-"),
                        state
                    );
                }
            }
        }
        UserCmd::Disable { username } => {
            let mut tx = db.begin().await?;
            match users::disable(&mut tx, &username, now).await {
                Err(StoreError::NotFound) => return Err(fail(format!("no user `{username}`"))),
                r => r?,
            }
            let mut event = operator_event(EventKind::UserDisabled, "user disable", now);
            event.user = Some(username.clone());
            commit_with(tx, event).await?;
            if json {
                print_json(&json!({"disabled": username}));
            } else {
                println!("disabled {username}");
            }
        }
    }
    db.close().await;
    Ok(())
}

pub async fn keys(config: Config, cmd: KeysCmd, json: bool) -> Result<(), CliError> {
    let now = Clock::default().now();
    let ring = match cmd {
        KeysCmd::List => KeyRing::open_existing(&config.keys_dir)?,
        KeysCmd::Rotate { .. } => KeyRing::open(&config.keys_dir, now)?,
    };
    if let KeysCmd::Rotate { now: at_once } = cmd {
        let delay = if at_once {
            0
        } else {
            config.keys.activation_delay_secs
        };
        let db = open_db(&config).await?;
        let tx = db.begin().await?;
        let kid = ring.rotate(now, delay)?;
        let mut event = operator_event(EventKind::KeyRotated, "keys rotate", now);
        event.reason = Some(format!(
            "operator: mandate keys rotate: key {kid} signs from {}",
            rfc3339(now + delay as i64)
        ));
        if let Err(e) = commit_with(tx, event).await {
            // No unaudited key: take the new one back out.
            if let Err(undo) = ring.discard(&kid) {
                tracing::error!(error = %undo, %kid, "could not remove the unaudited key");
            }
            return Err(e);
        }
        db.close().await;
        if !json {
            println!(
                "new key {kid} published; signs from {}",
                rfc3339(now + delay as i64)
            );
        }
    }
    let list = ring.list(now);
    if json {
        print_json(&serde_json::to_value(&list)?);
    } else {
        for k in &list {
            println!(
                "{}  {}  {}  activates {}",
                k.kid,
                k.alg,
                k.status,
                rfc3339(k.activates_at)
            );
        }
    }
    Ok(())
}

pub async fn audit(config: Config, cmd: AuditCmd, json: bool) -> Result<(), CliError> {
    let db = open_db_read_only(&config).await?;
    match cmd {
        AuditCmd::List {
            user,
            client,
            since,
        } => {
            let since = match since {
                Some(s) => Some(
                    time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| fail(format!("--since `{s}` is not an RFC 3339 time")))?
                        .unix_timestamp(),
                ),
                None => None,
            };
            let events = audit_store::list(
                &db,
                &Filter {
                    user,
                    client_id: client,
                    since,
                },
            )
            .await?;
            for e in &events {
                if json {
                    println!("{}", serde_json::to_string(e)?);
                } else {
                    println!(
                        "{}  {}  {}  client={}  user={}  aud={}  scope={}  {}",
                        e.time,
                        e.event.as_str(),
                        e.outcome.as_str(),
                        e.client_id.as_deref().unwrap_or("-"),
                        e.user.as_deref().unwrap_or("-"),
                        e.audience.as_deref().unwrap_or("-"),
                        e.scope_granted.as_deref().unwrap_or("-"),
                        e.reason.as_deref().unwrap_or(""),
                    );
                }
            }
        }
        AuditCmd::Verify => {
            let (events, head) = audit_store::chain(&db).await?;
            match verify_chain(&events, &head) {
                Ok(n) => {
                    if json {
                        print_json(&json!({"ok": true, "events": n}));
                    } else {
                        println!("audit chain intact: {n} events");
                    }
                }
                Err(b) => {
                    return Err(fail(format!(
                        "audit chain broken at event {} (#{}): {}",
                        b.id,
                        b.index + 1,
                        b.why
                    )))
                }
            }
        }
    }
    db.close().await;
    Ok(())
}
