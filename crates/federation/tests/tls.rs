#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Federated sources over HTTPS (issue 11, item 5): a local HTTPS source
//! whose certificate a test CA, made here, signed. Trusted through
//! `[outbound_tls] extra_ca_file` the source answers; without it the
//! handshake is refused and the source's report says why, by name.

use std::sync::Arc;

use auth::OutboundTls;
use domain::convergence::query;
use domain::{NhsNumber, OdsCode, PointerId, PointerRecord};
use federation::{
    CLINICAL_SUMMARY, FederatedRecord, FederationConfig, Federator, Retrieval, SourceAuthConfig,
    SourceConfig, SourceRegistry, SourceStatus,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

const PATIENT: &str = "9000000009";

/// A test CA and a `localhost` certificate it signed: (CA PEM, leaf, key).
fn test_pki() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (
        ca.pem(),
        leaf.der().clone(),
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
}

/// An HTTPS FHIR source on localhost that answers every request with an
/// empty searchset Bundle; returns its base URL.
async fn https_source(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> String {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake ends here: that is the point of one test.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body =
                    json!({"resourceType": "Bundle", "type": "searchset", "entry": []}).to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/fhir+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://localhost:{port}/FHIR/R4")
}

async fn retrieve(federator: &Federator) -> FederatedRecord {
    let q = query::parse([(
        "patient.identifier",
        "https://fhir.nhs.uk/Id/nhs-number|9000000009",
    )])
    .unwrap();
    let custodian = OdsCode::parse("QWO").unwrap();
    let pointer = PointerRecord {
        id: PointerId::generate(&custodian, "summary").unwrap(),
        nhs_number: NhsNumber::parse(PATIENT).unwrap(),
        custodian,
        type_key: CLINICAL_SUMMARY.into(),
        master_identifier: None,
        security_labels: vec![],
        version: 1,
        last_updated: "2026-01-01T00:00:00Z".into(),
        json: json!({"status": "current", "content": [{"attachment": {"url": "http://unused.invalid/"}}]})
            .to_string(),
    };
    federator
        .retrieve(
            Retrieval {
                query: &q,
                pointers: &[pointer],
                correlation_id: Some("tls-test"),
                trace: None,
                tracer: &telemetry::Tracer::OFF,
                pointer_url_base: "http://nrls.test/consumer/FHIR/R4/DocumentReference",
            },
            |_| true,
        )
        .await
}

fn federator(base: &str, tls: &OutboundTls) -> Federator {
    let source = SourceConfig {
        ods: "QWO".into(),
        name: "North shared care record".into(),
        base_url: base.into(),
        timeout_ms: 5_000,
        resource_types: vec!["Condition".into()],
        auth: SourceAuthConfig::None {},
    };
    let registry = SourceRegistry::from_configs(&[source]).unwrap();
    Federator::with_tls(registry, &FederationConfig::default(), tls).unwrap()
}

#[tokio::test]
async fn an_https_source_answers_when_its_ca_is_trusted_and_is_refused_by_name_when_not() {
    let (ca_pem, cert, key) = test_pki();
    let base = https_source(cert, key).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("regional-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let trusted = OutboundTls::load(Some(&ca_file)).unwrap();
    let record = retrieve(&federator(&base, &trusted)).await;
    let report = &record.sources[0];
    assert_eq!(report.status, SourceStatus::Ok, "{}", report.detail);

    // The built-in roots alone do not know the test CA.
    let record = retrieve(&federator(&base, &OutboundTls::default())).await;
    let report = &record.sources[0];
    assert_eq!(report.status, SourceStatus::Error, "{}", report.detail);
    assert_eq!(report.name.as_deref(), Some("North shared care record"));
    assert!(
        report.detail.contains("certificate is not trusted"),
        "{}",
        report.detail
    );
}

#[test]
fn an_unusable_ca_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let error = OutboundTls::load(Some(&missing)).unwrap_err().to_string();
    assert!(error.contains("missing.pem"), "{error}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    let error = OutboundTls::load(Some(&empty)).unwrap_err().to_string();
    assert!(error.contains("outbound_tls.extra_ca_file"), "{error}");
}
