//! Test harness: starts the real app, as `serve` does, on an ephemeral port
//! against a temporary SQLite file or a fresh PostgreSQL database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mandate::config::Config;
use mandate::state::AppState;
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Test servers give a client one second to send its headers.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend: `both!(name, |backend| async move {...})`.
#[macro_export]
macro_rules! both {
    ($(#[$m:meta])* $name:ident, $body:expr) => {
        $(#[$m])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::skip_postgres() {
                    return;
                }
                ($body)($crate::helpers::Backend::Postgres).await
            }
        }
    };
}

pub const CONFIG: &str = r#"
[[resources]]
id = "https://api.example.com"
name = "Invoices API"

  [[resources.scopes]]
  name = "invoices:read"
  description = "Read your invoices"

  [[resources.scopes]]
  name = "invoices:write"
  description = "Create, change and dispute invoices for you"
  min_acr = "urn:mandate:acr:mfa"
  max_auth_age_secs = 300

  [[resources.scopes]]
  name = "payments:send"
  description = "Send a payment from your account"
  approval = true

[[resources]]
id = "https://files.example.com"
name = "Files API"
access_token_ttl_secs = 120

  [[resources.scopes]]
  name = "files:read"
  description = "Read your files"
"#;

/// PostgreSQL tests are skipped only when the test command found no server
/// and CI is not set (it sets `MANDATE_TEST_SKIP_PG=1` then, loudly).
pub fn skip_postgres() -> bool {
    if std::env::var("MANDATE_TEST_SKIP_PG").as_deref() == Ok("1") {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "PostgreSQL is required when CI=true"
        );
        eprintln!(
            "!!! SKIPPING a PostgreSQL test: no PostgreSQL answered (MANDATE_TEST_SKIP_PG=1)"
        );
        return true;
    }
    false
}

fn pg_base() -> String {
    std::env::var("MANDATE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database URL for a fresh, empty database of `backend`, inside `dir`.
pub async fn fresh_database(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/data/mandate.db", dir.display()),
        Backend::Postgres => {
            use sqlx::Connection;
            let name = format!("mandate_test_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base()))
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 must answer (set MANDATE_TEST_SKIP_PG=1 to skip locally)");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .unwrap();
            format!("{}/{name}", pg_base())
        }
    }
}

/// Everything one test server needs on disk, kept across restarts.
pub struct Env {
    /// Kept alive for the test's duration: the database file and keys live here.
    pub _dir: TempDir,
    pub database_url: String,
    pub config_path: PathBuf,
    pub keys_dir: PathBuf,
}

impl Env {
    pub async fn new(backend: Backend, config_toml: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let database_url = fresh_database(backend, dir.path()).await;
        let config_path = dir.path().join("mandate.toml");
        std::fs::write(&config_path, config_toml).unwrap();
        let keys_dir = dir.path().join("keys");
        Env {
            _dir: dir,
            database_url,
            config_path,
            keys_dir,
        }
    }

    fn overrides(&self, issuer: &str, bind: &str) -> BTreeMap<String, String> {
        [
            ("MANDATE_ISSUER", issuer),
            ("MANDATE_BIND", bind),
            ("MANDATE_DATABASE_URL", self.database_url.as_str()),
            ("MANDATE_KEYS_DIR", self.keys_dir.to_str().unwrap()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Runs the `mandate` binary against this environment.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, None)
    }

    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mandate"));
        cmd.args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env("MANDATE_DATABASE_URL", &self.database_url)
            .env("MANDATE_KEYS_DIR", &self.keys_dir)
            .env_remove("MANDATE_ISSUER")
            .env_remove("MANDATE_BIND")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// Runs the CLI, asserts success and parses its JSON stdout.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "mandate {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "mandate {args:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `mandate audit list --json`: one event a line, parsed.
    pub fn audit_events(&self) -> Vec<Value> {
        let out = self.cli(&["audit", "list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The `token.*` events of `mandate audit list --json` (operator actions
    /// such as `client.created` left out), in chain order.
    pub fn token_events(&self) -> Vec<Value> {
        self.audit_events()
            .into_iter()
            .filter(|e| e["event"].as_str().is_some_and(|n| n.starts_with("token.")))
            .collect()
    }

    /// The temporary directory holding the config, the keys and (SQLite) `data/`.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Opens this environment's database directly (the server may be stopped
    /// or killed), as the CLI would.
    pub async fn connect_db(&self) -> mandate::store::Db {
        mandate::store::Db::connect(&self.database_url)
            .await
            .unwrap()
    }

    /// Starts the real `mandate serve` binary on `127.0.0.1:port` with `args`
    /// and `envs` added; its stderr (the logs) goes to `log`. Returns once
    /// `/readyz` answers 200 (panics after 10 s).
    pub async fn serve_process(
        &self,
        port: u16,
        args: &[&str],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> ServeProcess {
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mandate"));
        cmd.arg("serve")
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env("MANDATE_ISSUER", &base)
            .env("MANDATE_BIND", format!("127.0.0.1:{port}"))
            .env("MANDATE_DATABASE_URL", &self.database_url)
            .env("MANDATE_KEYS_DIR", &self.keys_dir)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: a full pipe would stall a busy server.
            .stderr(std::fs::File::create(log).unwrap());
        let child = cmd.spawn().unwrap();
        let proc = ServeProcess { base, child };
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http
                .get(format!("{}/readyz", proc.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return proc;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "mandate serve did not become ready: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// `mandate user create` with the password on stdin; asserts success and
    /// returns the JSON it printed.
    pub fn create_user(&self, username: &str, password: &str, extra: &[&str]) -> Value {
        let mut args = vec![
            "user",
            "create",
            "--username",
            username,
            "--password-stdin",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = self.cli_with_stdin(&args, Some(&format!("{password}\n")));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Creates a confidential client-credentials client; returns (id, secret).
    pub fn create_client(&self, extra: &[&str]) -> (String, String) {
        let mut args = vec!["client", "create", "--name", "test agent", "--json"];
        args.extend_from_slice(extra);
        let v = self.cli_json(&args);
        (
            v["client_id"].as_str().unwrap().to_string(),
            v["client_secret"].as_str().unwrap().to_string(),
        )
    }
}

/// A `mandate serve` child process (see [`Env::serve_process`]).
pub struct ServeProcess {
    pub base: String,
    pub child: std::process::Child,
}

impl ServeProcess {
    /// SIGTERM, then waits; asserts a clean exit (status 0).
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}");
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    /// Aborts the audit writer task: simulates it dying under the server.
    pub audit_abort: tokio::task::AbortHandle,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub async fn spawn_app(backend: Backend) -> (Env, TestApp) {
    let env = Env::new(backend, CONFIG).await;
    let app = start(&env).await;
    (env, app)
}

/// [`spawn_app`] with `top_level_toml` (keys outside any table, such as
/// `trusted_proxies = [...]`) placed before [`CONFIG`].
pub async fn spawn_app_with(backend: Backend, top_level_toml: &str) -> (Env, TestApp) {
    let env = Env::new(backend, &format!("{top_level_toml}\n{CONFIG}")).await;
    let app = start(&env).await;
    (env, app)
}

/// [`spawn_app`] with `registration_toml` as the body of a `[registration]`
/// table placed after [`CONFIG`], e.g. `mode = "token"`.
pub async fn spawn_app_with_registration(
    backend: Backend,
    registration_toml: &str,
) -> (Env, TestApp) {
    let env = Env::new(
        backend,
        &format!("{CONFIG}\n[registration]\n{registration_toml}\n"),
    )
    .await;
    let app = start(&env).await;
    (env, app)
}

/// Starts a server on `env` (a restart when one ran before).
pub async fn start(env: &Env) -> TestApp {
    start_with(env, |_| {}).await
}

/// [`start`], letting `tweak` change the built app before it serves (e.g.
/// `built.state.request_timeout`).
pub async fn start_with(env: &Env, tweak: impl FnOnce(&mut mandate::Built)) -> TestApp {
    start_inner(env, None, tweak).await
}

/// A second instance of a deployment: its own port, but the issuer of
/// `first` (instances behind one load balancer share one issuer, SPEC §1).
pub async fn start_instance_of(env: &Env, first: &TestApp) -> TestApp {
    start_inner(env, Some(first.base.clone()), |_| {}).await
}

async fn start_inner(
    env: &Env,
    issuer: Option<String>,
    tweak: impl FnOnce(&mut mandate::Built),
) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let issuer = issuer.unwrap_or_else(|| base.clone());
    let config = Config::from_toml(&text, &env.overrides(&issuer, &addr.to_string())).unwrap();
    let mut built = mandate::build(config).await.unwrap();
    tweak(&mut built);
    let state = built.state.clone();
    let audit_abort = built.audit_task.abort_handle();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        mandate::serve_with(
            listener,
            built,
            async {
                let _ = rx.await;
            },
            HEADER_READ_TIMEOUT,
        )
        .await
        .unwrap();
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        base,
        http,
        state,
        audit_abort,
        shutdown: Some(tx),
        task: Some(task),
    }
}

impl TestApp {
    /// Graceful shutdown; returns when the server has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POST /token with Basic authentication.
    pub async fn token_basic(
        &self,
        id: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(self.url("/token"))
            .basic_auth(id, Some(secret))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn jwks(&self) -> Value {
        self.http
            .get(self.url("/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Issues a client-credentials token and returns it.
    pub async fn cc_token(&self, id: &str, secret: &str) -> String {
        let resp = self
            .token_basic(
                id,
                secret,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "invoices:read"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    /// Number of `token.*` audit events stored (operator events left out).
    pub async fn count_token_events(&self) -> i64 {
        self.count("audit_events WHERE event LIKE 'token.%'").await
    }

    /// The `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// Number of rows in a table.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        mandate::on_db!(&self.state.db, |p| sqlx::query_scalar::<_, i64>(&sql)
            .fetch_one(p)
            .await
            .unwrap())
    }
}

/// Verifies `token` with an independent JOSE implementation (the
/// `jsonwebtoken` crate, not the josekit code that signed it) against `jwks`.
pub fn verify(
    token: &str,
    jwks: &Value,
    issuer: &str,
    audience: &str,
) -> (jsonwebtoken::Header, Value) {
    use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};
    let header = decode_header(token).expect("token header");
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("a JWK Set");
    let kid = header.kid.clone().expect("kid in header");
    let jwk = set
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} not in the served JWKS"));
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data =
        decode::<Value>(token, &key, &v).unwrap_or_else(|e| panic!("token does not verify: {e}"));
    (header, data.claims)
}

/// Asserts an RFC 6749 §5.2 error response exactly.
pub async fn assert_error(resp: reqwest::Response, status: u16, error: &str, description: &str) {
    assert_eq!(resp.status(), status, "status");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    if status == 401 {
        assert!(
            resp.headers().get("www-authenticate").is_some(),
            "401 without WWW-Authenticate"
        );
    }
    let body: Value = resp.json().await.expect("JSON error body");
    assert_eq!(
        body,
        serde_json::json!({"error": error, "error_description": description}),
    );
}

/// The value of the un-labelled sample `name` in an OpenMetrics exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().unwrap())
    })
}

/// The `jti` claim of a JWT, read without verifying it.
pub fn jti_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    let claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims["jti"].as_str().expect("a jti claim").to_string()
}

/// Asserts that no string in `v` (at any depth) holds a control character.
pub fn assert_no_control_chars(v: &Value) {
    fn walk(v: &Value, path: &str, whole: &Value) {
        match v {
            Value::String(s) => assert!(
                !s.chars().any(char::is_control),
                "control character in `{path}` = {s:?} of {whole}"
            ),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| walk(x, &format!("{path}[{i}]"), whole)),
            Value::Object(m) => m
                .iter()
                .for_each(|(k, x)| walk(x, &format!("{path}.{k}"), whole)),
            _ => {}
        }
    }
    walk(v, "", v)
}

/// A raw HTTP/1.1 response, parsed minimally.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Writes `request` (raw bytes) to `addr`, keeps the connection open for
/// writing, and reads one response: until the headers plus `Content-Length`
/// bytes of body have arrived, or the server closes. Panics if nothing
/// complete arrives within `limit`.
pub async fn raw_http(addr: &str, request: &[u8], limit: std::time::Duration) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(resp) = parse_raw(&buf) {
                return resp;
            }
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return parse_raw(&buf).unwrap_or_else(|| {
                    panic!(
                        "connection closed before a full response: {:?}",
                        String::from_utf8_lossy(&buf)
                    )
                });
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("no complete response within {limit:?}"))
}

/// A complete response in `buf`, if there is one yet.
fn parse_raw(buf: &[u8]) -> Option<RawResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = &buf[end + 4..];
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())?;
    (body.len() >= len).then(|| RawResponse {
        status,
        headers,
        body: body[..len].to_vec(),
    })
}
