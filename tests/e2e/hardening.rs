//! Hardening: hostile input, failure modes and operator accountability.
//! Config type errors, malformed headers, control characters, request ids,
//! readiness, fail-closed audit, group commit, file modes, read-only commands,
//! operator audit events, trusted proxies and the whole-request timeout.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::Value;

use crate::both;
use crate::helpers::{
    assert_error, assert_no_control_chars, free_port, metric, raw_http, spawn_app, spawn_app_with,
    start_with, Backend, Env, CONFIG,
};

const API: &str = "https://api.example.com";
const FORM: &str = "application/x-www-form-urlencoded";

/// The one error line of a refused command: asserts exit code `code` and
/// exactly one non-empty stderr line starting with `mandate: `; returns it.
fn one_error_line(out: &std::process::Output, code: Option<i32>, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    match code {
        Some(c) => assert_eq!(out.status.code(), Some(c), "{what}: {err}"),
        None => assert!(!out.status.success(), "{what} succeeded"),
    }
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one error line, got {err:?}");
    assert_eq!(err.trim().lines().count(), 1, "{what}: {err:?}");
    assert!(lines[0].starts_with("mandate: "), "{what}: {err:?}");
    lines[0].to_string()
}

// 1 -------------------------------------------------------------------------

/// A value of the wrong TOML type is refused like any bad value: exit 2 and
/// one line naming the field by its path (not a multi-line parser dump).
#[tokio::test]
async fn config_wrong_type_names_the_field() {
    let cases = [
        (
            "[tokens]\nmax_delegation_depth = \"4\"\n".to_string(),
            "tokens.max_delegation_depth",
        ),
        (
            "[[resources]]\nid = \"https://api.example.com\"\nname = \"Invoices API\"\n\
             access_token_ttl_secs = \"x\"\n"
                .to_string(),
            "resources[0].access_token_ttl_secs",
        ),
    ];
    for (toml, field) in cases {
        let env = Env::new(Backend::Sqlite, &toml).await;
        let out = env.cli(&["client", "list"]);
        let line = one_error_line(&out, Some(2), field);
        assert!(line.contains(field), "`{field}` not named in {line:?}");
        assert!(!env.keys_dir.exists(), "a refused start creates nothing");
        assert!(
            !env.dir().join("data").exists(),
            "a refused start creates nothing"
        );
    }
}

// 2 -------------------------------------------------------------------------

both!(
    /// An `Authorization` header that is not text is a failed client
    /// authentication, not "no header": valid credentials in the body must not
    /// rescue a request whose header cannot even be read.
    non_text_authorization_header_is_invalid_client, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    let resp = app
        .http
        .post(app.url("/token"))
        .header(AUTHORIZATION, HeaderValue::from_bytes(b"Basic \xff\xfe").unwrap())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "invalid_client", "malformed Authorization header").await;
    assert_eq!(app.count("tokens").await, 0, "no token was issued");
    let events = env.token_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "token.denied");
    app.stop().await;
});

// 3 -------------------------------------------------------------------------

both!(
    /// Log / audit injection: a `resource` carrying a newline, tab or carriage
    /// return is refused with a fixed description, and no control character
    /// reaches the error description or any field of the audit event.
    control_characters_in_resource_never_reach_the_audit_trail, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    for ctl in ["%0A", "%09", "%0D"] {
        // A raw body, so that the encoded control character is exactly as sent.
        let body = format!(
            "grant_type=client_credentials&scope=invoices:read&resource=https%3A%2F%2Fapi.example.com{ctl}evil"
        );
        let resp = app
            .http
            .post(app.url("/token"))
            .basic_auth(&id, Some(&secret))
            .header("content-type", FORM)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(
            resp,
            400,
            "invalid_target",
            "`resource` must be an absolute URI without whitespace or control characters",
        )
        .await;
    }
    let events = env.token_events();
    assert_eq!(events.len(), 3, "one token.denied per request");
    for e in &events {
        assert_eq!(e["event"], "token.denied");
        assert_no_control_chars(e);
    }
    assert_eq!(app.count("tokens").await, 0);
    app.stop().await;
});

both!(
    /// Log / audit injection through the client id: `client_id=abc%0Adef` fails
    /// authentication and its audit event holds no raw control character.
    control_characters_in_client_id_never_reach_the_audit_trail, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let resp = app
        .http
        .post(app.url("/token"))
        .header("content-type", FORM)
        .body("grant_type=client_credentials&client_id=abc%0Adef&client_secret=some-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_no_control_chars(&body);
    let events = env.token_events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["event"], "token.denied");
    assert!(
        !e["client_id"].as_str().unwrap_or_default().contains('\n'),
        "raw newline in the audit client_id: {e}"
    );
    assert_no_control_chars(e);
    app.stop().await;
});

/// Log injection: with text logs at debug level, a newline sent inside a
/// parameter never starts a forged log line of its own.
#[tokio::test]
async fn control_characters_never_reach_a_log_line_raw() {
    let env = Env::new(Backend::Sqlite, CONFIG).await;
    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    let log = env.dir().join("serve.log");
    let server = env
        .serve_process(
            free_port(),
            &["--log-format", "text"],
            &[("MANDATE_LOG", "debug"), ("NO_COLOR", "1")],
            &log,
        )
        .await;
    let http = reqwest::Client::new();
    let mut request_ids = Vec::new();
    for (auth, body) in [
        (
            true,
            "grant_type=client_credentials&resource=https%3A%2F%2Fapi.example.com%0Aevil",
        ),
        (
            false,
            "grant_type=client_credentials&client_id=abc%0Aevil&client_secret=x",
        ),
    ] {
        let mut req = http
            .post(format!("{}/token", server.base))
            .header("content-type", FORM)
            .body(body);
        if auth {
            req = req.basic_auth(&id, Some(&secret));
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_client_error(), "{}", resp.status());
        request_ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    // Not vacuous: the requests' own lines are in the log.
    for rid in &request_ids {
        assert!(
            text.contains(rid.as_str()),
            "request {rid} not logged:\n{text}"
        );
    }
    for line in text.lines() {
        assert!(
            !line.trim_start().starts_with("evil"),
            "a newline from a request reached the log raw: {line:?}\n{text}"
        );
    }
}

// 4 -------------------------------------------------------------------------

both!(
    /// A plain client `X-Request-Id` is kept end to end (response and audit);
    /// a hostile one (too long, spaces, `%`, non-ASCII) is replaced by a server
    /// id, and that id, never the client's, is what the audit trail records.
    request_id_is_echoed_only_when_safe, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    let send = |value: HeaderValue| {
        app.http
            .post(app.url("/token"))
            .basic_auth(&id, Some(&secret))
            .header("x-request-id", value)
            .form(&[("grant_type", "client_credentials")])
            .send()
    };

    // Step 1 - a safe id is echoed and is the audit event's request_id
    let safe = "abc-123_X.y";
    let resp = send(HeaderValue::from_static(safe)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], safe);

    // Step 2 - unsafe ids are replaced
    let long = "a".repeat(65);
    let unsafe_ids: Vec<Vec<u8>> = vec![
        long.into_bytes(),
        b"abc def".to_vec(),
        b"abc%0Adef".to_vec(),
        "abc\u{e9}def".as_bytes().to_vec(),
    ];
    let mut replaced = Vec::new();
    for raw in &unsafe_ids {
        let resp = send(HeaderValue::from_bytes(raw).unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let got = resp.headers()["x-request-id"].as_bytes().to_vec();
        assert!(!got.is_empty());
        assert_ne!(&got, raw, "unsafe request id echoed");
        replaced.push(String::from_utf8(got).unwrap());
    }

    // Step 3 - a DEL byte (which reqwest cannot even send) over a raw socket:
    // refused by the HTTP parser or replaced, never echoed.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let body = "grant_type=client_credentials";
    let mut request = format!(
        "POST /token HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: {FORM}\r\nContent-Length: {}\r\nConnection: close\r\nX-Request-Id: abc",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(b"\x7fdef\r\n\r\n");
    request.extend_from_slice(body.as_bytes());
    let addr = app.base.trim_start_matches("http://").to_string();
    let del = raw_http(&addr, &request, Duration::from_secs(10)).await;
    assert!(
        !del.headers.iter().any(|(_, v)| v.contains('\u{7f}')),
        "DEL request id echoed: {del:?}"
    );
    if let Some(rid) = del.header("x-request-id") {
        assert_eq!(del.status, 200, "{del:?}");
        replaced.push(rid.to_string());
    } else {
        assert_eq!(del.status, 400, "refused by the HTTP parser: {del:?}");
    }

    // Step 4 - the audit trail holds the safe id and the server ids only
    let events = env.token_events();
    assert_eq!(events.len(), 1 + replaced.len());
    let recorded: Vec<&str> = events.iter().map(|e| e["request_id"].as_str().unwrap()).collect();
    assert_eq!(recorded[0], safe);
    for (rid, e) in replaced.iter().zip(&events[1..]) {
        assert_eq!(e["request_id"], rid.as_str(), "audit request_id is the response's");
    }
    for raw in &unsafe_ids {
        let raw = String::from_utf8_lossy(raw);
        assert!(!recorded.iter().any(|r| *r == raw), "client id {raw:?} in the audit trail");
    }
    app.stop().await;
});

// 5 -------------------------------------------------------------------------

both!(
    /// Readiness covers the audit writer: if it dies, the instance says so on
    /// /readyz (so a load balancer drains it) and refuses tokens with a
    /// retryable 503 instead of issuing unaudited ones.
    readiness_follows_the_audit_writer, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!({"status": "ready"}));

    app.audit_abort.abort();
    // Bounded wait for the abort to take effect.
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        if r.status() != 200 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r.status(), 503, "readiness ignores a dead audit writer");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"status": "unavailable", "reason": "audit writer stopped"})
    );
    assert_error(
        app.token_basic(&id, &secret, &[("grant_type", "client_credentials")]).await,
        503,
        "temporarily_unavailable",
        "the server is temporarily unable to complete the request",
    )
    .await;
    assert_eq!(app.count("tokens").await, 0);
    app.stop().await;
});

// 6 -------------------------------------------------------------------------

both!(
    /// Fail-closed audit: when the event cannot be written, no token is issued
    /// or stored; once the trail accepts writes again, issuance resumes and the
    /// chain is intact.
    audit_write_failure_issues_nothing, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);

    // Step 1 - make every INSERT into audit_events fail
    let install: &[&str] = match backend {
        Backend::Sqlite => &["CREATE TRIGGER audit_fail BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'audit disabled by test'); END"],
        Backend::Postgres => &[
            "CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit disabled by test'; END $$",
            "CREATE TRIGGER audit_fail BEFORE INSERT ON audit_events \
             FOR EACH ROW EXECUTE FUNCTION audit_fail()",
        ],
    };
    for sql in install {
        mandate::on_db!(&app.state.db, |p| sqlx::query(sql).execute(p).await.map(|_| ()).unwrap());
    }

    // Step 2 - a valid request gets a 500 and no token
    let resp = app
        .token_basic(&id, &secret, &[("grant_type", "client_credentials")])
        .await;
    assert_error(resp, 500, "server_error", "the server could not complete the request").await;
    assert_eq!(app.count("tokens").await, 0, "a token was stored without its audit event");

    // Step 3 - writes work again: issuance resumes, the chain verifies
    let drop_sql = match backend {
        Backend::Sqlite => "DROP TRIGGER audit_fail",
        Backend::Postgres => "DROP TRIGGER audit_fail ON audit_events",
    };
    mandate::on_db!(&app.state.db, |p| sqlx::query(drop_sql).execute(p).await.map(|_| ()).unwrap());
    app.cc_token(&id, &secret).await;
    assert_eq!(app.count("tokens").await, 1);
    let out = env.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    app.stop().await;
});

// 7 -------------------------------------------------------------------------

both!(
    /// Group commit, observed from the outside: under 64 concurrent requests the
    /// audit batch histogram counts every event once and fewer commits than events.
    group_commit_shows_in_metrics, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (http, url, id, secret) = (app.http.clone(), app.url("/token"), id.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let text = app.metrics().await;
    let sum = metric(&text, "mandate_audit_batch_size_sum")
        .unwrap_or_else(|| panic!("no batch size sum in:\n{text}"));
    let count = metric(&text, "mandate_audit_batch_size_count")
        .unwrap_or_else(|| panic!("no batch size count in:\n{text}"));
    let written = app.count_token_events().await;
    assert_eq!(written, 64);
    assert_eq!(sum, written as f64, "every event is in exactly one batch");
    assert_eq!(metric(&text, "mandate_audit_events_total"), Some(sum));
    assert!(count >= 1.0 && count < sum, "no commit was shared: {count} commits for {sum} events");
    app.stop().await;
});

// 9 -------------------------------------------------------------------------

/// The SQLite database (clients, token records, the audit trail) is readable
/// by its owner only, whatever the umask.
#[tokio::test]
async fn sqlite_files_are_private() {
    let (env, app) = spawn_app(Backend::Sqlite).await;
    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    app.cc_token(&id, &secret).await;
    let mode = |p: std::path::PathBuf| {
        let m = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777;
        (p, m)
    };
    let data = env.dir().join("data");
    let (p, m) = mode(data.clone());
    assert_eq!(m, 0o700, "{} is {m:o}", p.display());
    // -wal and -shm exist while the server runs.
    for name in ["mandate.db", "mandate.db-wal", "mandate.db-shm"] {
        let (p, m) = mode(data.join(name));
        assert_eq!(m, 0o600, "{} is {m:o}", p.display());
    }
    app.stop().await;
}

// 10 ------------------------------------------------------------------------

/// Commands that only read (`token verify`, `keys list`, `audit list`,
/// `audit verify`) never create a keys directory, a database or its
/// directory: a typo in a path must not leave an empty store behind.
#[tokio::test]
async fn read_only_commands_create_nothing_sqlite() {
    let env = Env::new(Backend::Sqlite, CONFIG).await;
    let data = env.dir().join("data");
    let db = data.join("mandate.db");
    for p in [&env.keys_dir, &data, &db] {
        assert!(!p.exists(), "{} exists before the test", p.display());
    }
    for args in [
        &["token", "verify", "abc"][..],
        &["keys", "list"],
        &["audit", "list"],
        &["audit", "verify"],
    ] {
        let out = env.cli(args);
        one_error_line(&out, None, &format!("{args:?}"));
        for p in [&env.keys_dir, &data, &db] {
            assert!(!p.exists(), "mandate {args:?} created {}", p.display());
        }
    }
}

/// [`read_only_commands_create_nothing_sqlite`] on PostgreSQL: reading the
/// audit trail of an empty database fails and leaves it without tables.
#[tokio::test]
async fn read_only_commands_create_nothing_postgres() {
    use sqlx::Connection;
    if crate::helpers::skip_postgres() {
        return;
    }
    let env = Env::new(Backend::Postgres, CONFIG).await;
    for args in [&["audit", "verify"][..], &["audit", "list"]] {
        let out = env.cli(args);
        one_error_line(&out, None, &format!("{args:?}"));
    }
    let mut conn = sqlx::PgConnection::connect(&env.database_url)
        .await
        .unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 0, "a read-only command migrated the database");
    conn.close().await.unwrap();
}

// 11 ------------------------------------------------------------------------

both!(
    /// Operator accountability: every change made with the CLI is an audit event
    /// in the same chain, and no secret or password is written into it.
    operator_actions_are_audited, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    // Each command must add exactly one event, of its own kind.
    let mut seen = env.audit_events().len();
    let mut one_new_event = |kind: &str| -> Value {
        let all = env.audit_events();
        let new = &all[seen..];
        assert_eq!(new.len(), 1, "`{kind}` must add one event, added {new:?}");
        assert_eq!(new[0]["event"], kind, "{}", new[0]);
        assert_eq!(new[0]["outcome"], "success", "{}", new[0]);
        seen = all.len();
        new[0].clone()
    };

    let (id, secret) = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    assert_eq!(one_new_event("client.created")["client_id"], id.as_str());
    let rotated = env.cli_json(&["client", "rotate-secret", &id, "--json"]);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_string();
    assert_eq!(one_new_event("client.secret_rotated")["client_id"], id.as_str());
    env.cli_json(&["client", "delete", &id, "--json"]);
    assert_eq!(one_new_event("client.deleted")["client_id"], id.as_str());
    let password = "correct horse battery staple";
    env.create_user("alice", password, &[]);
    assert_eq!(one_new_event("user.created")["user"], "alice");
    env.cli_json(&["user", "disable", "alice", "--json"]);
    assert_eq!(one_new_event("user.disabled")["user"], "alice");
    env.cli_json(&["keys", "rotate", "--json"]);
    one_new_event("key.rotated");

    let out = env.cli(&["audit", "list", "--json"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for s in [secret.as_str(), new_secret.as_str(), password] {
        assert!(!text.contains(s), "a secret reached the audit trail");
    }
    let out = env.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    app.stop().await;
});

// 12 ------------------------------------------------------------------------

/// Sends a client-credentials request with `xff` as X-Forwarded-For and
/// returns the audit `ip` recorded for it (found by its request id).
async fn ip_recorded_for(
    env: &Env,
    app: &crate::helpers::TestApp,
    client: &(String, String),
    xff: &str,
) -> Value {
    let rid = format!("xff-{}", uuid::Uuid::new_v4().simple());
    let resp = app
        .http
        .post(app.url("/token"))
        .basic_auth(&client.0, Some(&client.1))
        .header("x-request-id", &rid)
        .header("x-forwarded-for", xff)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = env.token_events();
    let e = events
        .iter()
        .find(|e| e["request_id"] == rid.as_str())
        .unwrap_or_else(|| panic!("no event for {rid}"));
    e["ip"].clone()
}

both!(
    /// Behind a trusted proxy the audit `ip` is the client's address from
    /// X-Forwarded-For: the rightmost one that is not a trusted proxy, so a
    /// client prepending a forged address cannot choose what is recorded.
    trusted_proxies_set_the_audited_ip, |backend| async move {
    let (env, app) = spawn_app_with(backend, r#"trusted_proxies = ["127.0.0.1/32"]"#).await;
    let client = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    for (xff, ip) in [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7, 127.0.0.1", "203.0.113.7"),
        ("198.51.100.9, 203.0.113.7", "203.0.113.7"),
        ("not-an-ip", "127.0.0.1"),
    ] {
        assert_eq!(ip_recorded_for(&env, &app, &client, xff).await, ip, "X-Forwarded-For: {xff}");
    }
    app.stop().await;
});

both!(
    /// Without `trusted_proxies`, X-Forwarded-For is the caller's own claim and
    /// is ignored.
    x_forwarded_for_is_ignored_without_trusted_proxies, |backend| async move {
    let (env, app) = spawn_app(backend).await;
    let client = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    assert_eq!(ip_recorded_for(&env, &app, &client, "203.0.113.7").await, "127.0.0.1");
    app.stop().await;
});

both!(
    /// X-Forwarded-For counts only when the socket peer is a trusted proxy:
    /// with `trusted_proxies` naming other networks, a direct caller's header
    /// is ignored.
    x_forwarded_for_from_an_untrusted_peer_is_ignored, |backend| async move {
    let (env, app) = spawn_app_with(backend, r#"trusted_proxies = ["10.0.0.0/8"]"#).await;
    let client = env.create_client(&["--resource", API, "--scope", "invoices:read"]);
    assert_eq!(ip_recorded_for(&env, &app, &client, "203.0.113.7").await, "127.0.0.1");
    app.stop().await;
});

/// A bad CIDR in `trusted_proxies` is a configuration error naming the entry.
#[tokio::test]
async fn bad_trusted_proxy_names_the_entry() {
    let env = Env::new(
        Backend::Sqlite,
        &format!("trusted_proxies = [\"10.0.0.0/99\"]\n{CONFIG}"),
    )
    .await;
    let out = env.cli(&["client", "list"]);
    let line = one_error_line(&out, Some(2), "trusted_proxies");
    assert!(line.contains("trusted_proxies[0]"), "{line}");
}

// 13 ------------------------------------------------------------------------

/// A request that outlives the whole-request timeout (here: a body that never
/// finishes arriving) is answered as an OAuth error, RFC 6749 JSON with
/// `no-store`, so clients see a retryable `temporarily_unavailable`.
#[tokio::test]
async fn timed_out_request_gets_oauth_json() {
    let env = Env::new(Backend::Sqlite, CONFIG).await;
    let app = start_with(&env, |b| b.state.request_timeout = Duration::from_secs(1)).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut request = format!(
        "POST /token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {FORM}\r\nContent-Length: 100\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(b"grant_type");
    let resp = raw_http(&addr, &request, Duration::from_secs(10)).await;
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(resp.header("cache-control"), Some("no-store"), "{resp:?}");
    let body: Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&resp.body)));
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    app.stop().await;
}
