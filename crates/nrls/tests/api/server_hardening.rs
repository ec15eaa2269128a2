//! The server loop, over real TCP: header-size and idle limits, TLS, and
//! graceful shutdown that lets in-flight requests finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use nrls::server::{ConnectionLimits, load_tls, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn router() -> Router {
    Router::new().route("/", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            "slow ok"
        }),
    )
}

struct Running {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(
    limits: ConnectionLimits,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router(), limits, tls, async {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> String {
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let limits = ConnectionLimits {
        max_header_bytes: 16 * 1024,
        ..Default::default()
    };
    let server = start(limits, None).await;
    let mut ok = TcpStream::connect(server.addr).await.unwrap();
    let reply = exchange(
        &mut ok,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let mut big = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let reply = exchange(&mut big, request.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:.80}");
    let _ = server.stop.send(());
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let server = start(limits, None).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "an idle connection must be closed by the server"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let _ = server.stop.send(());
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn in_flight_requests_finish_after_shutdown_starts() {
    let server = start(ConnectionLimits::default(), None).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = server.stop.send(());
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&out);
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("slow ok"),
        "{reply}"
    );
    server.task.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "no new connections after shutdown"
    );
}

/// A self-signed certificate made with the openssl CLI (synthetic, test only).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed to make a test certificate");
    assert!(status.success());
    (cert, key)
}

#[tokio::test]
async fn serves_https_with_a_configured_certificate() {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let server = start(
        ConnectionLimits::default(),
        Some(load_tls(&cert, &key).unwrap()),
    )
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let reply = exchange(
        &mut tls,
        b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("ok"),
        "{reply}"
    );

    // Plain HTTP on the TLS port gets no answer.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    let reply = exchange(&mut plain, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(!reply.starts_with("HTTP/1.1 200"));

    assert!(load_tls(&dir.path().join("missing.pem"), &key).is_err());
    let _ = server.stop.send(());
    server.task.await.unwrap().unwrap();
}
