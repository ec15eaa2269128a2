//! The one place nrls builds an HTTP client for its outbound calls (JWKS key
//! sets of apps and identity providers, federated sources, the OTLP
//! exporter): rustls with the ring provider, the Mozilla roots
//! (`webpki-roots`) plus an optional extra CA file, so `https` works
//! everywhere a URL is configured. Redirects are never followed: a server
//! must not be able to send nrls to a URL nobody configured.

use std::fmt;
use std::path::{Path, PathBuf};

/// A CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutboundTlsError {
    /// The file cannot be read.
    #[error("outbound_tls.extra_ca_file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file holds no PEM certificate, or one that does not parse.
    #[error("outbound_tls.extra_ca_file {path}: {problem}")]
    Certificate { path: PathBuf, problem: String },
}

/// Which servers outbound HTTPS trusts: the built-in roots, plus the
/// certificates of `[outbound_tls] extra_ca_file` (a private CA of a
/// regional network or an identity provider). Cheap to clone.
#[derive(Clone, Default)]
pub struct OutboundTls {
    extra_roots: Vec<reqwest::Certificate>,
    extra_ca_file: Option<PathBuf>,
}

impl fmt::Debug for OutboundTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundTls")
            .field("extra_ca_file", &self.extra_ca_file)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

impl OutboundTls {
    /// The built-in roots, plus every certificate in `extra_ca_file` (PEM).
    pub fn load(extra_ca_file: Option<&Path>) -> Result<OutboundTls, OutboundTlsError> {
        let Some(path) = extra_ca_file else {
            return Ok(OutboundTls::default());
        };
        let pem = std::fs::read(path).map_err(|source| OutboundTlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let problem = |problem: String| OutboundTlsError::Certificate {
            path: path.to_owned(),
            problem,
        };
        let extra_roots =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| problem(e.to_string()))?;
        if extra_roots.is_empty() {
            return Err(problem("no PEM certificate in the file".into()));
        }
        Ok(OutboundTls {
            extra_roots,
            extra_ca_file: Some(path.to_owned()),
        })
    }

    /// Where the extra roots came from, if any.
    pub fn extra_ca_file(&self) -> Option<&Path> {
        self.extra_ca_file.as_deref()
    }

    /// The builder every outbound client starts from; callers add their
    /// time-outs, pool settings and user agent.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(true)
            .redirect(reqwest::redirect::Policy::none());
        self.extra_roots
            .iter()
            .cloned()
            .fold(builder, reqwest::ClientBuilder::add_root_certificate)
    }
}

/// A short, fixed description of why a request did not get an answer,
/// naming a refused TLS certificate plainly (the most common mistake when a
/// source or provider moves to a private CA): never free text from the peer.
pub fn transport_problem(error: &reqwest::Error) -> &'static str {
    if tls_refused(error) {
        "TLS handshake failed: the server's certificate is not trusted (see outbound_tls.extra_ca_file)"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "the answer was cut off"
    } else {
        "request failed"
    }
}

/// Whether rustls refused the handshake somewhere in the error's causes.
fn tls_refused(error: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<rustls::Error>() {
            return true;
        }
        // hyper wraps rustls's error in io::Errors, whose `source()` skips
        // the error they wrap: step into it instead.
        cause = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}
