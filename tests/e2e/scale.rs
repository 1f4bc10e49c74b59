//! Scale-out consistency (SPEC §1): two instances on one PostgreSQL
//! database and one keys directory, one issuer. A bounded concurrent burst:
//! no 5xx; every token from either instance verifies, introspects, exchanges
//! and revokes at the other; every single-use value (a code, a refresh
//! token) is accepted exactly once across both; the audit chain stays one
//! valid chain.

use serde_json::Value;

use crate::authorize::{browser, exchange as redeem_code, get_code, public_client};
use crate::helpers::{start, start_instance_of, verify, Backend, Env, TestApp, CONFIG};

const API: &str = "https://api.example.com";
const FILES: &str = "https://files.example.com";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

async fn post(
    app: &TestApp,
    path: &str,
    auth: &(String, String),
    form: &[(&str, &str)],
) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .basic_auth(&auth.0, Some(&auth.1))
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_stay_consistent_under_a_burst() {
    if crate::helpers::skip_postgres() {
        return;
    }
    let env = Env::new(Backend::Postgres, CONFIG).await;
    let one = start(&env).await;
    let two = start_instance_of(&env, &one).await;
    let agent = env.create_client(&[
        "--resource",
        API,
        "--resource",
        FILES,
        "--scope",
        "invoices:read",
        "--scope",
        "files:read",
    ]);
    let api = env.create_client(&[
        "--client-type",
        "service",
        "--grant",
        "token-exchange",
        "--owns-resource",
        API,
        "--exchange-to",
        FILES,
    ]);
    let files = env.create_client(&[
        "--client-type",
        "service",
        "--owns-resource",
        FILES,
        "--resource",
        FILES,
        "--scope",
        "files:read",
    ]);
    let apps = std::sync::Arc::new([one, two]);

    // Step 1 - a burst: each task issues at one instance, exchanges and
    // introspects at the other.
    let mut tasks = Vec::new();
    for i in 0..32usize {
        let (apps, agent, api, files) = (apps.clone(), agent.clone(), api.clone(), files.clone());
        tasks.push(tokio::spawn(async move {
            let (a, b) = (&apps[i % 2], &apps[(i + 1) % 2]);
            let r = post(
                a,
                "/token",
                &agent,
                &[
                    ("grant_type", "client_credentials"),
                    ("resource", API),
                    ("scope", "invoices:read"),
                ],
            )
            .await;
            assert_eq!(r.status(), 200, "issue");
            let root = r.json::<Value>().await.unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_string();
            let r = post(
                b,
                "/token",
                &api,
                &[
                    ("grant_type", TE),
                    ("subject_token", &root),
                    ("subject_token_type", AT),
                    ("resource", FILES),
                ],
            )
            .await;
            assert_eq!(r.status(), 200, "exchange at the other instance");
            let hop = r.json::<Value>().await.unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_string();
            let v: Value = post(a, "/introspect", &files, &[("token", &hop)])
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(v["active"], true, "introspect back at the first");
            (root, hop)
        }));
    }
    let mut pairs = Vec::new();
    for t in tasks {
        pairs.push(t.await.unwrap());
    }
    let jwks = apps[0].jwks().await;
    assert_eq!(jwks, apps[1].jwks().await, "one keys directory, one JWKS");
    for (root, hop) in &pairs {
        verify(root, &jwks, &apps[0].base, API);
        verify(hop, &jwks, &apps[0].base, FILES); // one issuer for both
    }

    // Step 2 - revoke at one instance, inactive at the other.
    let (root, hop) = &pairs[0];
    assert_eq!(
        post(&apps[1], "/revoke", &agent, &[("token", root)])
            .await
            .status(),
        200
    );
    let v: Value = post(&apps[0], "/introspect", &files, &[("token", hop)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v, serde_json::json!({"active": false}));

    // Step 3 - single-use values race across both instances: one winner each.
    env.create_user("alice", "correct horse battery", &[]);
    let client_id = public_client(&env);
    let b = browser();
    let q = get_code(&b, &apps[0], &client_id, "&scope=invoices:read").await;
    let (r1, r2) = tokio::join!(
        redeem_code(&apps[0], &client_id, &q["code"], &[]),
        redeem_code(&apps[1], &client_id, &q["code"], &[])
    );
    let statuses = [r1.status().as_u16(), r2.status().as_u16()];
    assert!(
        statuses.contains(&200) && statuses.contains(&400),
        "one code, one redemption: {statuses:?}"
    );
    let winner: Value = if r1.status() == 200 {
        r1.json().await.unwrap()
    } else {
        r2.json().await.unwrap()
    };
    let _ = winner;
    let q = get_code(&b, &apps[1], &client_id, "&scope=invoices:read").await;
    let body: Value = redeem_code(&apps[1], &client_id, &q["code"], &[])
        .await
        .json()
        .await
        .unwrap();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let form = |t: &str| {
        vec![
            ("grant_type".to_string(), "refresh_token".to_string()),
            ("refresh_token".to_string(), t.to_string()),
            ("client_id".to_string(), client_id.clone()),
        ]
    };
    let (r1, r2) = tokio::join!(
        apps[0]
            .http
            .post(apps[0].url("/token"))
            .form(&form(&refresh))
            .send(),
        apps[1]
            .http
            .post(apps[1].url("/token"))
            .form(&form(&refresh))
            .send()
    );
    let statuses = [r1.unwrap().status().as_u16(), r2.unwrap().status().as_u16()];
    assert!(
        statuses.contains(&200) && statuses.contains(&400),
        "one rotation wins: {statuses:?}"
    );

    // Step 4 - no 5xx anywhere, one valid chain.
    for app in apps.iter() {
        let text = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("mandate_http_requests_total") && l.contains("status=\"5")),
            "a 5xx: {text}"
        );
    }
    let out = env.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let apps = std::sync::Arc::try_unwrap(apps).ok().unwrap();
    let [one, two] = apps;
    two.stop().await;
    one.stop().await;
}
