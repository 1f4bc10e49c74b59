//! The operator CLI (SPEC §10) and the `serve` process itself: config
//! validation, JSON logs, graceful shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::both;
use crate::helpers::{assert_error, spawn_app, Backend, Env, CONFIG};

const API: &str = "https://api.example.com";

both!(client_lifecycle, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let created = env.cli_json(&[
        "client",
        "create",
        "--name",
        "Billing agent",
        "--client-type",
        "service",
        "--resource",
        API,
        "--scope",
        "invoices:read",
        "--owns-resource",
        API,
        "--json",
    ]);
    let id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    // ≥ 256 bits: 32 bytes in base64url are 43 characters.
    assert!(secret.len() >= 43);
    assert_eq!(created["client_type"], "service");
    assert_eq!(
        created["grant_types"],
        serde_json::json!(["client_credentials"])
    );
    assert!(created.get("secret_hash").is_none());

    // Stored as SHA-256, never in the clear.
    let stored: String = mandate::on_db!(&app.state.db, |p| sqlx::query_scalar(
        "SELECT secret_hash FROM clients WHERE client_id = $1"
    )
    .bind(&id)
    .fetch_one(p)
    .await
    .unwrap());
    assert_ne!(stored, secret);
    assert_eq!(stored, mandate::secret::hash(&secret));

    let shown = env.cli_json(&["client", "show", &id, "--json"]);
    assert_eq!(shown["name"], "Billing agent");
    assert!(
        shown.get("client_secret").is_none(),
        "show never reveals a secret"
    );
    let list = env.cli_json(&["client", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);

    // rotate-secret: the old secret stops working at once.
    let rotated = env.cli_json(&["client", "rotate-secret", &id, "--json"]);
    let new_secret = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert_error(
        app.token_basic(&id, &secret, &[("grant_type", "client_credentials")])
            .await,
        401,
        "invalid_client",
        "client authentication failed",
    )
    .await;
    app.cc_token(&id, new_secret).await;

    // Bad requests name the problem and exit non-zero.
    let out = env.cli(&[
        "client",
        "create",
        "--name",
        "x",
        "--resource",
        "https://nope.example.com",
        "--json",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--resource `https://nope.example.com` is not a resource"));
    let out = env.cli(&[
        "client",
        "create",
        "--name",
        "x",
        "--resource",
        API,
        "--scope",
        "files:read",
    ]);
    assert!(!out.status.success());

    let deleted = env.cli_json(&["client", "delete", &id, "--json"]);
    assert_eq!(deleted["deleted"], id.as_str());
    assert!(!env.cli(&["client", "show", &id]).status.success());
    assert_error(
        app.token_basic(&id, new_secret, &[("grant_type", "client_credentials")])
            .await,
        401,
        "invalid_client",
        "client authentication failed",
    )
    .await;
    app.stop().await;
});

both!(user_lifecycle, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let created = env.create_user(
        "alice",
        "correct horse battery",
        &["--email", "a@example.com"],
    );
    assert_eq!(created["username"], "alice");
    assert_eq!(created["email"], "a@example.com");
    assert!(!created.to_string().contains("correct horse"));
    let phc: String = mandate::on_db!(&app.state.db, |p| sqlx::query_scalar(
        "SELECT password_hash FROM users WHERE username = 'alice'"
    )
    .fetch_one(p)
    .await
    .unwrap());
    assert!(phc.starts_with("$argon2id$"));
    assert!(mandate::secret::verify_password(
        "correct horse battery",
        &phc
    ));

    let dup = env.cli_with_stdin(
        &["user", "create", "--username", "alice", "--password-stdin"],
        Some("another password"),
    );
    assert!(!dup.status.success());
    let short = env.cli_with_stdin(
        &["user", "create", "--username", "bob", "--password-stdin"],
        Some("short"),
    );
    assert!(!short.status.success());

    let disabled = env.cli_json(&["user", "disable", "alice", "--json"]);
    assert_eq!(disabled["disabled"], "alice");
    let list = env.cli_json(&["user", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["disabled"], true);
    assert!(!env.cli(&["user", "disable", "nobody"]).status.success());
    app.stop().await;
});

/// A bad value is refused at start with one line naming the field.
#[tokio::test]
async fn bad_config_exits_naming_the_field() {
    let env = Env::new(Backend::Sqlite, CONFIG).await;
    let cases: [(&str, &str, &str); 4] = [
        ("MANDATE_ISSUER", "http://auth.example.com", "issuer"),
        ("MANDATE_BIND", "not-an-address", "bind"),
        ("MANDATE_DATABASE_URL", "mysql://x", "database_url"),
        ("MANDATE_ISSUER", "https://auth.example.com/path", "issuer"),
    ];
    for (var, value, field) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["serve", "--config"])
            .arg(&env.config_path)
            .env(var, value)
            .env("MANDATE_KEYS_DIR", &env.keys_dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(&format!(": {field}: ")), "{err}");
    }
    std::fs::write(&env.config_path, "[tokens]\naccess_token_ttl_secs = 7200\n").unwrap();
    let out = env.cli(&["migrate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("tokens.access_token_ttl_secs: must be between 1 and 3600"));
    assert!(!env.keys_dir.exists(), "a refused start creates nothing");
}

/// `serve` logs JSON with a request id, never a secret or token, and stops
/// cleanly on SIGTERM.
#[tokio::test]
async fn serve_logs_json_and_stops_on_sigterm() {
    let env = Env::new(Backend::Sqlite, CONFIG).await;
    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&env.config_path)
        .env("MANDATE_ISSUER", &base)
        .env("MANDATE_BIND", format!("127.0.0.1:{port}"))
        .env("MANDATE_DATABASE_URL", &env.database_url)
        .env("MANDATE_KEYS_DIR", &env.keys_dir)
        .env("MANDATE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "server did not become ready");
    let r = http
        .post(format!("{base}/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stderr = child.stderr.take().unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}");
    let lines: Vec<String> = BufReader::new(stderr).lines().map(|l| l.unwrap()).collect();
    assert!(!lines.is_empty());
    let mut saw_request = false;
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        if v.to_string().contains(&request_id) {
            saw_request = true;
        }
        assert!(!line.contains(&secret), "client secret in logs: {line}");
        assert!(!line.contains(&token), "access token in logs: {line}");
    }
    assert!(saw_request, "the request id is on the request's log lines");
}

/// Starts `serve --demo` in `dir`, waits for its banner, returns (child, banner).
fn start_demo(env: &Env, port: u16) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--demo"])
        .current_dir(env.config_path.parent().unwrap())
        .env("MANDATE_ISSUER", format!("http://127.0.0.1:{port}"))
        .env("MANDATE_BIND", format!("127.0.0.1:{port}"))
        .env("MANDATE_DATABASE_URL", &env.database_url)
        .env("MANDATE_KEYS_DIR", &env.keys_dir)
        .env_remove("MANDATE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(env.keys_dir.with_file_name("demo.log")).unwrap())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "demo exited early: {banner}"
        );
        banner.push_str(&line);
        if line.starts_with("Metadata:") {
            break;
        }
    }
    // Keep reading (and discarding) whatever else the server prints.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, banner)
}

fn stop(mut child: std::process::Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// The README's first command: seeds idempotently and its printed curl works.
#[tokio::test]
async fn demo_seeds_idempotently_and_its_curl_works() {
    // No config file: the demo brings its own resources.
    let env = Env::new(Backend::Sqlite, "").await;
    std::fs::remove_file(&env.config_path).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for round in 0..2 {
        let (child, banner) = start_demo(&env, port);
        let secret = banner
            .split_whitespace()
            .find_map(|w| w.strip_prefix("client_secret="))
            .unwrap_or_else(|| panic!("no secret in banner: {banner}"))
            .to_string();
        let curl = banner
            .lines()
            .find(|l| {
                l.trim_start().starts_with("curl -s -u 'demo-agent:") && l.contains("resource=")
            })
            .unwrap_or_else(|| panic!("no curl in banner: {banner}"))
            .trim()
            .to_string();
        // Run the printed command itself.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{curl} -S"))
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "{}",
                std::fs::read_to_string(env.keys_dir.with_file_name("demo.log")).unwrap()
            );
        }
        let body: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "round {round}: curl printed {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let token = body["access_token"].as_str().unwrap().to_string();
        // The verify line of the banner, as `mandate token verify`.
        let verified = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["token", "verify", &token, "--json"])
            .env("MANDATE_ISSUER", format!("http://127.0.0.1:{port}"))
            .env("MANDATE_KEYS_DIR", &env.keys_dir)
            .output()
            .unwrap();
        assert!(
            verified.status.success(),
            "{}",
            String::from_utf8_lossy(&verified.stderr)
        );
        let v: Value = serde_json::from_slice(&verified.stdout).unwrap();
        assert_eq!(v["claims"]["sub"], "demo-agent");
        assert_eq!(v["claims"]["aud"], API);
        assert_eq!(v["claims"]["scope"], "invoices:read");
        assert!(secret.len() >= 43);
        stop(child);
    }
    // Idempotent: still one demo client and one demo user after two starts.
    std::fs::write(&env.config_path, "").unwrap();
    let clients = env.cli_json(&["client", "list", "--json"]);
    assert_eq!(clients.as_array().unwrap().len(), 1);
    let users = env.cli_json(&["user", "list", "--json"]);
    assert_eq!(users.as_array().unwrap().len(), 1);
    // A forged token is refused by `token verify`.
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["token", "verify", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
        .env("MANDATE_KEYS_DIR", &env.keys_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
