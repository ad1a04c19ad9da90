//! The request path without sockets or TLS: hyper's HTTP/1.1 server over an in-memory pipe, the
//! connection's verified identity, and `Proxy::handle` (strip spoofed identity headers, route,
//! authorize against the revocation snapshot, inject the identity, forward) to the built-in echo
//! upstream, which answers in-process.
//!
//! Shape: one keep-alive connection, one request at a time, on a current-thread runtime; the
//! client is hyper's HTTP/1.1 client on the other end of a `tokio::io::duplex` pipe, so every
//! number includes hyper parsing and writing both ways. Compare the variants:
//!
//! - `request_path/hyper_only`: the same pipe and client, a service that answers a fixed 200:
//!   the floor.
//! - `request_path/proxy_echo`: certgate's request path, a plain GET.
//! - `request_path/proxy_echo_spoofed`: the same with three inbound `X-Client-*` headers that
//!   must be stripped (the slow path of header hygiene: it allocates and logs a warning, here
//!   filtered out).
//!
//! The echo upstream renders the headers it got as JSON, about a third of `proxy_echo`; a real
//! upstream adds a pooled HTTP/1.1 exchange instead. The registry is an empty SQLite file in a
//! temporary directory (read once, at start-up).
//!
//! Run: `cargo bench --bench request_path` (add `-- --quick` for a short run). `cargo test
//! --all-targets` only compiles it.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use certgate::api::Api;
use certgate::config::Config;
use certgate::lifecycle::Wiring;
use certgate::ops::Metrics;
use certgate::proxy::{ClientCert, Connection, OwnPaths, Proxy};
use certgate::revocation::Standing;
use certgate::tls::HandshakeOutcome;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};

fn leaf_der() -> Vec<u8> {
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name
        .push(DnType::OrganizationName, "Bench Bank");
    leaf.distinguished_name
        .push(DnType::CommonName, "12345678901234 taro");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.self_signed(&KeyPair::generate().expect("key"))
        .expect("leaf")
        .der()
        .to_vec()
}

fn proxy(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> (Arc<Proxy>, Arc<Connection>) {
    let text = format!(
        "[server]\ncert = \"unused\"\nkey = \"unused\"\n\
         [upstream]\nurl = \"builtin:echo\"\n\
         [log]\naccess = false\n\
         [store]\nurl = \"sqlite://{dir}/certgate.db\"\n\
         [pki]\ndir = \"{dir}/pki\"\n",
        dir = dir.display()
    );
    let config = Config::parse(&text).expect("config");
    rt.block_on(async {
        let lifecycle = certgate::serve::open_lifecycle(&config, Wiring::default())
            .await
            .expect("registry");
        let standing = Standing::load(lifecycle.store().clone(), lifecycle.clock().clone())
            .await
            .expect("standing");
        let clock = lifecycle.clock().clone();
        let api: Arc<dyn OwnPaths> = Arc::new(Api::new(
            lifecycle,
            certgate::api::pages::Pages::new(
                certgate::api::pages::PageKey::from_bytes(&[0; 32]),
                certgate::api::pages::Templates::new(None),
            ),
        ));
        let metrics = Arc::new(Metrics::new(
            &HandshakeOutcome::ALL.map(HandshakeOutcome::label),
        ));
        let proxy = Arc::new(Proxy::new(&config, metrics, api, standing, clock).expect("proxy"));
        let resolved = proxy.identities().resolve(&leaf_der());
        assert!(resolved.is_ok(), "the bench certificate names a caller");
        let connection = Arc::new(Connection::new(
            "192.0.2.10:50000".parse().expect("addr"),
            ClientCert::Verified {
                resolved,
                chain_header: None,
                lifecycle_ca: true,
            },
            std::time::Duration::from_secs(30),
        ));
        (proxy, connection)
    })
}

/// Serves one in-memory HTTP/1.1 connection with `proxy` (or a fixed answer without) and returns
/// the client end.
async fn pipe(target: Option<(Arc<Proxy>, Arc<Connection>)>) -> SendRequest<Empty<Bytes>> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let service = service_fn(move |request| {
            let target = target.clone();
            async move {
                Ok::<_, Infallible>(match target {
                    Some((proxy, connection)) => {
                        let survey = proxy.survey(&request);
                        proxy.handle(connection, request, survey).await
                    }
                    None => Response::new(http_body_util::Either::Right(Full::new(
                        Bytes::from_static(b"ok\n"),
                    ))),
                })
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service)
            .await;
    });
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .expect("client handshake");
    tokio::spawn(conn);
    sender
}

async fn one(sender: &mut SendRequest<Empty<Bytes>>, spoofed: bool) {
    let mut request = Request::get("/accounts/1234?view=summary")
        .header(http::header::HOST, "bank.example")
        .header(http::header::USER_AGENT, "certgate-bench")
        .header(http::header::ACCEPT, "*/*")
        .body(Empty::new())
        .expect("request");
    if spoofed {
        let headers = request.headers_mut();
        for name in ["x-client-corp-id", "x-client-role", "x-client-anything"] {
            headers.insert(name, HeaderValue::from_static("spoofed"));
        }
    }
    sender.ready().await.expect("ready");
    let response = sender.send_request(request).await.expect("response");
    assert!(response.status().is_success(), "{}", response.status());
    let _ = response.into_body().collect().await.expect("body");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, connection) = proxy(&rt, dir.path());
    let mut group = c.benchmark_group("request_path");
    let variants: [(&str, bool, bool); 3] = [
        ("hyper_only", false, false),
        ("proxy_echo", true, false),
        ("proxy_echo_spoofed", true, true),
    ];
    for (name, with_proxy, spoofed) in variants {
        let target = with_proxy.then(|| (proxy.clone(), connection.clone()));
        let mut sender = rt.block_on(pipe(target));
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(one(&mut sender, spoofed)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
