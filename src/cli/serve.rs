//! `mandate serve [--demo]` and `mandate migrate`.

use std::io::Write;

use tokio::net::TcpListener;

use super::{fail, CliError};
use crate::config::{Config, Resource, Scope};
use crate::oauth::types::{AuthMethod, ClientOrigin, ClientType, GrantType};
use crate::secret;
use crate::store::clients::{self, Client};
use crate::store::users::{self, User};
use crate::store::{Db, StoreError};

pub async fn migrate(config: Config, json: bool) -> Result<(), CliError> {
    let db = Db::connect(config.database_url.expose()).await?;
    db.migrate().await?;
    db.close().await;
    if json {
        println!("{}", serde_json::json!({"migrated": true}));
    } else {
        println!("migrations applied");
    }
    Ok(())
}

pub async fn run(mut config: Config, demo: bool) -> Result<(), CliError> {
    if demo {
        add_demo_resources(&mut config)?;
    }
    let bind = config.bind;
    let max_age = crate::http::discovery::JWKS_MAX_AGE_SECS;
    if config.keys.activation_delay_secs < max_age {
        tracing::warn!(
            activation_delay_secs = config.keys.activation_delay_secs,
            "keys.activation_delay_secs is shorter than the JWKS cache lifetime ({max_age} s): \
             resource servers may see a rotated key sign before they fetch it"
        );
    }
    let built = crate::build(config)
        .await
        .map_err(|e| CliError::Failed(format!("cannot start: {e:#}")))?;
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|e| CliError::Config(format!("bind: cannot listen on {bind}: {e}")))?;
    if demo {
        let banner = seed_demo(
            &built.state.db,
            &built.state.config,
            built.state.clock.now(),
        )
        .await?;
        // Never let a closed stdout (`serve --demo | head`) take the server down.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{banner}").and_then(|_| out.flush());
    }
    tracing::info!(addr = %bind, issuer = %built.state.config.issuer, "mandate listening");
    crate::serve(listener, built, shutdown_signal())
        .await
        .map_err(|e| fail(format!("server error: {e:#}")))?;
    tracing::info!("mandate stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

pub const DEMO_RESOURCE: &str = "https://api.example.com";
pub const DEMO_FILES: &str = "https://files.example.com";
pub const DEMO_CLIENT: &str = "demo-agent";
pub const DEMO_USER: &str = "demo";
/// Where the demo's browser flow ends (nothing needs to listen there).
pub const DEMO_REDIRECT: &str = "http://127.0.0.1:9876/callback";

fn scope(name: &str, description: &str) -> Scope {
    Scope {
        name: name.into(),
        description: description.into(),
        min_acr: None,
        max_auth_age_secs: None,
        approval: false,
    }
}

/// The resources of SPEC §1's example, used when the config names none.
pub fn demo_resources(ttl: u64) -> Vec<Resource> {
    vec![
        Resource {
            id: DEMO_RESOURCE.into(),
            name: "Invoices API".into(),
            access_token_ttl_secs: ttl,
            scopes: vec![
                scope("invoices:read", "Read your invoices"),
                Scope {
                    min_acr: Some("urn:mandate:acr:mfa".into()),
                    max_auth_age_secs: Some(300),
                    ..scope(
                        "invoices:write",
                        "Create, change and dispute invoices for you",
                    )
                },
                Scope {
                    approval: true,
                    ..scope("payments:send", "Send a payment from your account")
                },
            ],
        },
        Resource {
            id: DEMO_FILES.into(),
            name: "Files API".into(),
            access_token_ttl_secs: ttl,
            scopes: vec![scope("files:read", "Read your files")],
        },
    ]
}

/// Adds the demo resources the configuration does not define yet. A clash
/// (a demo scope name used by another resource) is refused: scope names are
/// unique across the configuration.
fn add_demo_resources(config: &mut Config) -> Result<(), CliError> {
    for r in demo_resources(config.tokens.access_token_ttl_secs) {
        if config.resource(&r.id).is_some() {
            continue;
        }
        if let Some(s) = r.scopes.iter().find(|s| config.scope(&s.name).is_some()) {
            return Err(CliError::Config(format!(
                "resources: --demo adds `{}` with scope `{}`, which the configuration already uses elsewhere",
                r.id, s.name
            )));
        }
        config.resources.push(r);
    }
    Ok(())
}

/// Creates the demo client and user when missing. Their secrets are stored
/// only as hashes, so each start gives them fresh ones and prints those.
async fn seed_demo(db: &Db, config: &Config, now: i64) -> Result<String, CliError> {
    let client_secret = secret::random_token();
    let client = Client {
        client_id: DEMO_CLIENT.into(),
        name: "Demo agent".into(),
        client_type: ClientType::AiAgent,
        public: false,
        secret_hash: Some(secret::hash(&client_secret)),
        origin: ClientOrigin::Operator,
        token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
        metadata: None,
        grant_types: vec![
            GrantType::ClientCredentials,
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
        ],
        redirect_uris: vec![DEMO_REDIRECT.into()],
        resources: vec![DEMO_RESOURCE.into(), DEMO_FILES.into()],
        scopes: vec!["invoices:read".into(), "files:read".into()],
        owns_resources: vec![],
        exchange_to: vec![],
        dpop_bound_access_tokens: false,
        jwks_uri: None,
        jwks: None,
        created_at: now,
        updated_at: now,
    };
    // Replace an existing demo client: it always matches this version's demo.
    let mut tx = db.begin().await?;
    match clients::delete(&mut tx, DEMO_CLIENT).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    clients::insert(&mut tx, &client).await?;
    tx.commit().await?;
    let password = secret::random_token()[..16].to_string();
    let phc = secret::hash_password(&password).map_err(|e| fail(e.to_string()))?;
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        username: DEMO_USER.into(),
        email: Some("demo@example.com".into()),
        password_hash: phc.clone(),
        disabled_at: None,
        created_at: now,
    };
    match users::insert(db, &user).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => users::set_password_hash(db, DEMO_USER, &phc).await?,
        Err(e) => return Err(e.into()),
    }
    let iss = &config.issuer;
    let verifier = secret::random_token();
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let enc = |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    let authorize = format!(
        "{iss}/authorize?response_type=code&client_id={DEMO_CLIENT}&redirect_uri={}&scope=invoices%3Aread+files%3Aread&resource={}&resource={}&state=demo&code_challenge={challenge}&code_challenge_method=S256",
        enc(DEMO_REDIRECT),
        enc(DEMO_RESOURCE),
        enc(DEMO_FILES)
    );
    Ok(format!(
        "\nmandate demo is running at {iss}\n\
         \n\
         Demo agent  client_id={DEMO_CLIENT}  client_secret={client_secret}\n\
         Demo user   username={DEMO_USER}  password={password}\n\
         (fresh secrets on every `serve --demo`; they are stored only as hashes)\n\
         \n\
         Get a token as the agent (client credentials, RFC 9068 JWT):\n\
         \x20 curl -s -u '{DEMO_CLIENT}:{client_secret}' -d grant_type=client_credentials -d resource={DEMO_RESOURCE} -d scope=invoices:read {iss}/token\n\
         \n\
         Verify it (ES256 signature against the published keys, typ, iss, exp) and print its claims:\n\
         \x20 TOKEN=$(curl -s -u '{DEMO_CLIENT}:{client_secret}' -d grant_type=client_credentials -d resource={DEMO_RESOURCE} {iss}/token | python3 -c 'import sys,json; print(json.load(sys.stdin)[\"access_token\"])')\n\
         \x20 cargo run --release -q -- token verify \"$TOKEN\"\n\
         Resource servers verify it with any JOSE library against {iss}/jwks.json.\n\
         \n\
         Or let the demo user delegate to the agent in a browser (authorization code + PKCE):\n\
         \x20 1. open {authorize}\n\
         \x20 2. sign in as {DEMO_USER} / {password} and press Allow; the browser then goes to\n\
         \x20    {DEMO_REDIRECT}?code=...  (nothing listens there: copy `code` from the address bar)\n\
         \x20 3. curl -s -u '{DEMO_CLIENT}:{client_secret}' -d grant_type=authorization_code -d code=PASTE_THE_CODE -d redirect_uri={DEMO_REDIRECT} -d code_verifier={verifier} -d resource={DEMO_RESOURCE} {iss}/token\n\
         \x20 The token's sub is {DEMO_USER}, its act names the agent; {iss}/account lists the grant and can revoke it.\n\
         \n\
         Metadata: {iss}/.well-known/oauth-authorization-server\n"
    ))
}
