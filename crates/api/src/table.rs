//! The route table: every operation nrls serves, with what the OpenAPI
//! document says about it. The router and the document are both built from
//! it, so neither can list an operation the other lacks. Add a route with
//! [`Routes::add`], never with `Router::route` (a test compares the router's
//! paths with the table).

use std::collections::BTreeMap;

use axum::Router;
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use domain::issue::{ErrorCode, Issue, IssueType};

use crate::error::ApiError;
use crate::state::AppState;

/// Media types named in the document.
pub mod media {
    pub const FHIR_JSON: &str = "application/fhir+json";
    pub const JSON: &str = "application/json";
    pub const FORM: &str = "application/x-www-form-urlencoded";
    pub const PROMETHEUS: &str = "text/plain; version=0.0.4";
}

/// What the OpenAPI document says about one operation.
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    pub operation_id: &'static str,
    pub summary: &'static str,
    /// Groups operations in the document: `producer`, `consumer`, `oauth`, `operations`.
    pub tag: &'static str,
    /// Needs `Authorization: Bearer`, `NHSD-End-User-Organisation-ODS` and `X-Request-Id`.
    pub authenticated: bool,
    /// Query parameters accepted (search parameters come from the same list
    /// the search parser enforces).
    pub query: &'static [&'static str],
    /// Request body media types; empty for none.
    pub body: &'static [&'static str],
    pub success: u16,
    /// Response media type.
    pub produces: &'static str,
    /// Routine (probes, scrapes): counted in metrics, logged at debug only.
    pub quiet: bool,
    /// A patient route: a patient token or the `/my-record/` session cookie.
    pub patient: bool,
}

impl Doc {
    /// A public operation answering 200 with FHIR JSON.
    pub const fn new(operation_id: &'static str, summary: &'static str, tag: &'static str) -> Doc {
        Doc {
            operation_id,
            summary,
            tag,
            authenticated: false,
            query: &[],
            body: &[],
            success: 200,
            produces: media::FHIR_JSON,
            quiet: false,
            patient: false,
        }
    }

    pub const fn patient(mut self) -> Doc {
        self.patient = true;
        self
    }

    pub const fn authenticated(mut self) -> Doc {
        self.authenticated = true;
        self
    }

    pub const fn query(mut self, parameters: &'static [&'static str]) -> Doc {
        self.query = parameters;
        self
    }

    pub const fn body(mut self, media_types: &'static [&'static str]) -> Doc {
        self.body = media_types;
        self
    }

    pub const fn success(mut self, status: u16) -> Doc {
        self.success = status;
        self
    }

    pub const fn produces(mut self, media_type: &'static str) -> Doc {
        self.produces = media_type;
        self
    }

    pub const fn quiet(mut self) -> Doc {
        self.quiet = true;
        self
    }
}

/// One served operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: Method,
    /// The full route template, e.g. `/producer/FHIR/R4/DocumentReference/{id}`.
    pub path: String,
    pub doc: Doc,
}

/// A router and the operations it serves, built together.
pub struct Routes {
    router: Router<AppState>,
    operations: Vec<Operation>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes::new()
    }
}

impl Routes {
    pub fn new() -> Routes {
        Routes {
            router: Router::new(),
            operations: Vec::new(),
        }
    }

    /// Serves `method path` with `handler`, documented by `doc`.
    pub fn add<H, T>(mut self, method: Method, path: &str, doc: Doc, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        // A method axum cannot route is a programming error, found at start-up.
        let Ok(filter) = MethodFilter::try_from(method.clone()) else {
            panic!("axum cannot route {method} {path}");
        };
        self.router = self.router.route(path, on(filter, handler));
        self.operations.push(Operation {
            method,
            path: path.to_owned(),
            doc,
        });
        self
    }

    /// Serves `other` under `prefix`.
    pub fn nest(mut self, prefix: &str, other: Routes) -> Routes {
        self.router = self.router.nest(prefix, other.router);
        self.operations
            .extend(other.operations.into_iter().map(|mut op| {
                op.path = format!("{prefix}{}", op.path);
                op
            }));
        self
    }

    /// Serves `other` alongside.
    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.operations.extend(other.operations);
        self
    }

    /// NRL v3 answers HEAD with 405: for every path served with GET, a HEAD
    /// handler says so with the path's `Allow` (axum would otherwise answer
    /// HEAD as GET). Not an operation, so not documented.
    pub fn refusing_head(mut self) -> Routes {
        let mut methods: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for op in &self.operations {
            methods
                .entry(op.path.clone())
                .or_default()
                .push(op.method.as_str().to_owned());
        }
        for (path, methods) in methods {
            if !methods.iter().any(|m| m == "GET") {
                continue;
            }
            let allow = methods.join(",");
            self.router = self.router.route(
                &path,
                on(MethodFilter::HEAD, move || head_refused(allow.clone())),
            );
        }
        self
    }

    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<Operation>) {
        (self.router, self.operations)
    }
}

async fn head_refused(allow: String) -> Response {
    let mut response = ApiError::one(Issue::general(
        ErrorCode::MethodNotAllowed,
        IssueType::NotSupported,
        "HEAD is not supported; use GET",
    ))
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
