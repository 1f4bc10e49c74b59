//! Client ID Metadata Documents: `mandate::oauth::cimd::resolve` against
//! documents served over HTTPS on 127.0.0.1 from inside the test (a CA and a
//! server certificate made with rcgen; the CA is trusted through
//! `SSL_CERT_FILE`, as an operator would point OpenSSL at a private CA).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use axum::body::Bytes;
use hyper::body::{Body, Frame, Incoming};
use mandate::oauth::cimd::{self, CimdError};
use mandate::oauth::types::{AuthMethod, ClientOrigin, ClientType, GrantType};
use serde_json::{json, Value};
use tokio_native_tls::native_tls;

use crate::both;
use crate::helpers::{spawn_app, spawn_app_with_registration, TestApp};

/// The test PKI: made once per process. `SSL_CERT_FILE` is set here, before
/// the first metadata fetch builds an HTTP client (each fetch reads it).
struct Pki {
    cert_pem: String,
    key_pem: String,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mandate test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();

        let dir = std::env::temp_dir().join(format!("mandate-test-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        // Once, before any metadata fetch of this process (the only TLS
        // clients of the test binary).
        std::env::set_var("SSL_CERT_FILE", &ca_file);
        Pki {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    })
}

/// What the document server answers on one path.
#[derive(Clone)]
struct Doc {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Sent in chunks without a `Content-Length`.
    chunked: bool,
}

impl Doc {
    fn json(v: &Value, cache_control: Option<&str>) -> Doc {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(cc) = cache_control {
            headers.push(("cache-control", cc.to_string()));
        }
        Doc {
            status: 200,
            headers,
            body: v.to_string().into_bytes(),
            chunked: false,
        }
    }
}

/// An HTTPS server on 127.0.0.1 serving [`Doc`]s and counting requests.
struct DocServer {
    port: u16,
    docs: Arc<Mutex<HashMap<String, Doc>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A body sent as separate chunks of unknown total length.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

type AnyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

impl DocServer {
    /// A server whose certificate chains to the trusted test CA.
    async fn start() -> DocServer {
        let pki = pki();
        DocServer::start_with(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).await
    }

    /// A server with a self-signed certificate nobody trusts.
    async fn start_untrusted() -> DocServer {
        pki();
        let own = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        DocServer::start_with(
            own.cert.pem().as_bytes(),
            own.signing_key.serialize_pem().as_bytes(),
        )
        .await
    }

    async fn start_with(cert_pem: &[u8], key_pem: &[u8]) -> DocServer {
        use http_body_util::BodyExt;
        let identity = native_tls::Identity::from_pkcs8(cert_pem, key_pem).unwrap();
        let acceptor =
            tokio_native_tls::TlsAcceptor::from(native_tls::TlsAcceptor::new(identity).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let docs: Arc<Mutex<HashMap<String, Doc>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (d, h) = (docs.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, docs, hits) = (acceptor.clone(), d.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let path = req.uri().path().to_string();
                            *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                            let doc = docs.lock().unwrap().get(&path).cloned();
                            async move {
                                let doc = doc.unwrap_or(Doc {
                                    status: 404,
                                    headers: vec![],
                                    body: b"not found".to_vec(),
                                    chunked: false,
                                });
                                let body: AnyBody = if doc.chunked {
                                    Chunks(
                                        doc.body
                                            .chunks(8 * 1024)
                                            .map(Bytes::copy_from_slice)
                                            .collect(),
                                    )
                                    .boxed_unsync()
                                } else {
                                    http_body_util::Full::new(Bytes::from(doc.body)).boxed_unsync()
                                };
                                let mut resp = hyper::Response::builder().status(doc.status);
                                for (k, v) in &doc.headers {
                                    resp = resp.header(*k, v);
                                }
                                Ok::<_, Infallible>(resp.body(body).unwrap())
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        DocServer {
            port,
            docs,
            hits,
            task,
        }
    }

    /// `https://127.0.0.1:<port><path>`.
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn serve(&self, path: &str, doc: Doc) {
        self.docs.lock().unwrap().insert(path.to_string(), doc);
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// A document for `url` with `redirect_uris` and a name.
fn document(url: &str) -> Value {
    json!({
        "client_id": url,
        "client_name": "Test Agent",
        "client_uri": "https://agent.example.com",
        "redirect_uris": ["http://127.0.0.1:4567/callback", "https://agent.example.com/cb"],
        "token_endpoint_auth_method": "none",
    })
}

/// A server that trusts loopback client id URLs.
async fn loopback_app(backend: crate::helpers::Backend) -> (crate::helpers::Env, TestApp) {
    spawn_app_with_registration(backend, "allow_loopback_client_ids = true").await
}

both!(
    /// A good document becomes a public ai-agent client with its redirect
    /// URIs and name; a fresh cached copy is used without a fetch.
    a_document_resolves_to_a_public_agent_and_is_cached,
    |backend| async move {
        let server = DocServer::start().await;
        let (_env, app) = loopback_app(backend).await;
        let url = server.url("/client.json");
        server.serve("/client.json", Doc::json(&document(&url), Some("public, max-age=60")));
        let now = app.state.clock.now();

        // Step 1 - the first resolve fetches
        let c = cimd::resolve(&app.state, &url, now).await.unwrap();
        assert_eq!(c.client_id, url);
        assert_eq!(c.name, "Test Agent");
        assert_eq!(
            c.redirect_uris,
            vec!["http://127.0.0.1:4567/callback", "https://agent.example.com/cb"]
        );
        assert_eq!(c.origin, ClientOrigin::MetadataDocument);
        assert_eq!(c.client_type, ClientType::AiAgent);
        assert!(c.public);
        assert_eq!(c.token_endpoint_auth_method, AuthMethod::None);
        assert_eq!(
            c.grant_types,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert!(c.resources.is_empty() && c.scopes.is_empty());
        assert_eq!(c.metadata.as_ref().unwrap()["client_uri"], "https://agent.example.com");
        assert_eq!(server.hits("/client.json"), 1);
        assert_eq!(app.count("client_metadata_documents").await, 1);

        // Step 2 - within max-age the cache answers
        let c = cimd::resolve(&app.state, &url, now + 59).await.unwrap();
        assert_eq!(c.name, "Test Agent");
        assert_eq!(server.hits("/client.json"), 1, "served from the cache");

        // Step 3 - after max-age it is fetched again
        cimd::resolve(&app.state, &url, now + 61).await.unwrap();
        assert_eq!(server.hits("/client.json"), 2);
    }
);

both!(
    /// `no-store` is never cached; no caching header caches 300 s.
    http_caching_is_honoured,
    |backend| async move {
        let server = DocServer::start().await;
        let (_env, app) = loopback_app(backend).await;
        let now = app.state.clock.now();

        let url = server.url("/no-store.json");
        server.serve("/no-store.json", Doc::json(&document(&url), Some("no-store")));
        cimd::resolve(&app.state, &url, now).await.unwrap();
        cimd::resolve(&app.state, &url, now).await.unwrap();
        assert_eq!(server.hits("/no-store.json"), 2, "no-store: fetched every time");
        assert_eq!(app.count("client_metadata_documents").await, 0);

        let url = server.url("/plain.json");
        server.serve("/plain.json", Doc::json(&document(&url), None));
        cimd::resolve(&app.state, &url, now).await.unwrap();
        cimd::resolve(&app.state, &url, now + 299).await.unwrap();
        assert_eq!(server.hits("/plain.json"), 1, "cached for 300 s by default");
        cimd::resolve(&app.state, &url, now + 300).await.unwrap();
        assert_eq!(server.hits("/plain.json"), 2);
    }
);

both!(
    /// Documents that are not acceptable, and fetches that must not be made
    /// or followed, are refused with a clear error.
    bad_documents_are_refused,
    |backend| async move {
        let server = DocServer::start().await;
        let (_env, app) = loopback_app(backend).await;
        let now = app.state.clock.now();
        let resolve = |path: &'static str| {
            let url = server.url(path);
            let state = app.state.clone();
            async move { cimd::resolve(&state, &url, now).await }
        };

        // * a client_id that is not the document's URL
        let mut doc = document(&server.url("/other.json"));
        server.serve("/mismatch.json", Doc::json(&doc, None));
        let e = resolve("/mismatch.json").await.unwrap_err();
        assert!(matches!(e, CimdError::ClientIdMismatch { .. }), "{e:?}");
        assert!(e.to_string().contains("which is not its own URL"), "{e}");

        // * a redirect, never followed
        server.serve("/good.json", Doc::json(&document(&server.url("/good.json")), None));
        server.serve(
            "/moved.json",
            Doc {
                status: 302,
                headers: vec![("location", server.url("/good.json"))],
                body: Vec::new(),
                chunked: false,
            },
        );
        let e = resolve("/moved.json").await.unwrap_err();
        assert!(matches!(e, CimdError::Redirect { status: 302, .. }), "{e:?}");
        assert_eq!(server.hits("/good.json"), 0, "the redirect was not followed");

        // * not JSON
        server.serve(
            "/html.json",
            Doc {
                status: 200,
                headers: vec![("content-type", "text/html".into())],
                body: b"<html>hello</html>".to_vec(),
                chunked: false,
            },
        );
        let e = resolve("/html.json").await.unwrap_err();
        assert!(matches!(e, CimdError::NotJson { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("The client's metadata document at {} is not valid JSON", server.url("/html.json"))
        );

        // * no redirect_uris
        let url = server.url("/no-redirects.json");
        server.serve(
            "/no-redirects.json",
            Doc::json(&json!({"client_id": url, "client_name": "x"}), None),
        );
        let e = resolve("/no-redirects.json").await.unwrap_err();
        assert!(e.to_string().ends_with("it has no `redirect_uris`"), "{e}");

        // * no client_id
        server.serve(
            "/anonymous.json",
            Doc::json(&json!({"redirect_uris": ["https://agent.example.com/cb"]}), None),
        );
        let e = resolve("/anonymous.json").await.unwrap_err();
        assert!(e.to_string().ends_with("it has no `client_id`"), "{e}");

        // * a secret in a public document
        let url = server.url("/secret.json");
        doc = document(&url);
        doc["client_secret"] = json!("hunter2");
        server.serve("/secret.json", Doc::json(&doc, None));
        let e = resolve("/secret.json").await.unwrap_err();
        assert!(e.to_string().contains("cannot hold a client secret"), "{e}");

        // * over 64 KiB, with a Content-Length and without one
        for (path, chunked) in [("/big.json", false), ("/big-chunked.json", true)] {
            let mut doc = document(&server.url(path));
            doc["padding"] = json!("x".repeat(70 * 1024));
            let mut d = Doc::json(&doc, None);
            d.chunked = chunked;
            server.serve(path, d);
            let e = resolve(path).await.unwrap_err();
            assert!(matches!(e, CimdError::TooLarge { .. }), "{path}: {e:?}");
        }

        // * not found
        let e = resolve("/missing.json").await.unwrap_err();
        assert!(matches!(e, CimdError::Status { status: 404, .. }), "{e:?}");

        // Nothing refused was cached.
        assert_eq!(app.count("client_metadata_documents").await, 0);
    }
);

both!(
    /// Without `allow_loopback_client_ids`, loopback is refused before any
    /// connection: an IP literal, and a name that resolves to loopback.
    loopback_is_refused_by_default,
    |backend| async move {
        let server = DocServer::start().await;
        let (_env, app) = spawn_app(backend).await;
        let now = app.state.clock.now();
        for url in [
            server.url("/client.json"),
            format!("https://localhost:{}/client.json", server.port),
        ] {
            server.serve("/client.json", Doc::json(&document(&url), None));
            let e = cimd::resolve(&app.state, &url, now).await.unwrap_err();
            assert!(matches!(e, CimdError::AddressNotAllowed { .. }), "{url}: {e:?}");
            assert!(e.to_string().contains("is not allowed"), "{e}");
        }
        assert_eq!(server.hits("/client.json"), 0, "no request reached the server");
    }
);

both!(
    /// With loopback allowed, a name (not only an IP literal) resolves
    /// through the guarded resolver and works.
    a_loopback_name_resolves_when_allowed,
    |backend| async move {
        let server = DocServer::start().await;
        let (_env, app) = loopback_app(backend).await;
        let url = format!("https://localhost:{}/client.json", server.port);
        server.serve("/client.json", Doc::json(&document(&url), None));
        let c = cimd::resolve(&app.state, &url, app.state.clock.now())
            .await
            .unwrap();
        assert_eq!(c.client_id, url);
    }
);

both!(
    /// `client_id_metadata_documents = false` refuses every URL client id.
    disabled_documents_are_refused,
    |backend| async move {
        let (_env, app) = spawn_app_with_registration(
            backend,
            "client_id_metadata_documents = false\nallow_loopback_client_ids = true",
        )
        .await;
        let e = cimd::resolve(&app.state, "https://127.0.0.1:1/client.json", 0)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Client ID Metadata Documents are disabled on this server"
        );
    }
);

both!(
    /// The document's server must present a certificate the server trusts.
    an_untrusted_certificate_is_refused,
    |backend| async move {
        let server = DocServer::start_untrusted().await;
        let (_env, app) = loopback_app(backend).await;
        let url = server.url("/client.json");
        server.serve("/client.json", Doc::json(&document(&url), None));
        let e = cimd::resolve(&app.state, &url, app.state.clock.now())
            .await
            .unwrap_err();
        assert!(matches!(e, CimdError::Fetch { .. }), "{e:?}");
        assert!(
            e.to_string()
                .ends_with("could not be fetched: the host's TLS certificate could not be verified"),
            "{e}"
        );
        assert_eq!(server.hits("/client.json"), 0);
    }
);
