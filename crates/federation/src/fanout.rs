//! The federator: plans a request, calls the sources in parallel under their
//! time-outs, the overall deadline and their circuit breakers, then converges
//! and assembles the answer. Holds no clinical content between requests.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use domain::clock::now_instant;
use domain::convergence::{self, Rules, SharedRecordQuery, SourcedResource};
use domain::{OdsCode, PointerRecord};
use reqwest::Client;
use serde::Deserialize;
use serde_json::Value;
use telemetry::{TraceContext, Tracer};
use time::OffsetDateTime;
use tokio::task::JoinSet;

use crate::assemble::{self, Assembly, Contribution};
use crate::breaker::{Admission, BreakerSettings, Breakers};
use crate::client::{FetchContext, FetchError, FetchLimits, Fetched, fetch_source};
use crate::plan::{Ask, plan};
use crate::registry::SourceRegistry;
use crate::report::{SourceReport, SourceStatus};
use crate::spans::{self, CallEnd};
use crate::token::Tokens;

/// The `[federation]` configuration table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// The whole fan-out ends by then; slower sources are reported timed out.
    pub overall_deadline_ms: u64,
    /// Consecutive failures that open a source's circuit.
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before one trial.
    pub cool_down_seconds: u64,
    /// Pages followed per resource type and source.
    pub max_pages: usize,
    /// Largest answer accepted from a source, per page.
    pub max_response_bytes: usize,
    /// Condition onset window for convergence.
    pub condition_onset_window_days: u32,
    /// Idle keep-alive connections kept per source host.
    pub max_idle_connections_per_source: usize,
}

impl Default for FederationConfig {
    fn default() -> Self {
        let breaker = BreakerSettings::default();
        let limits = FetchLimits::default();
        FederationConfig {
            overall_deadline_ms: 3_000,
            failure_threshold: breaker.failure_threshold,
            cool_down_seconds: breaker.cool_down.as_secs(),
            max_pages: limits.max_pages,
            max_response_bytes: limits.max_response_bytes,
            condition_onset_window_days: Rules::default().condition_onset_window_days,
            max_idle_connections_per_source: 8,
        }
    }
}

/// Why the federator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("federation.{0} must be at least 1")]
    Setting(&'static str),
    #[error("cannot build the outbound HTTP client: {0}")]
    Client(String),
}

/// One shared care record request.
#[derive(Debug, Clone, Copy)]
pub struct Retrieval<'a> {
    pub query: &'a SharedRecordQuery,
    /// Every pointer the store holds for the patient (the plan filters them).
    pub pointers: &'a [PointerRecord],
    /// Passed to sources as `X-Correlation-Id`.
    pub correlation_id: Option<&'a str>,
    /// The request's trace, carried to every source in `traceparent` so one
    /// trace id links the hops. `None` sends no `traceparent`.
    pub trace: Option<&'a TraceContext>,
    /// Records a CLIENT span per source call when the trace is recorded
    /// ([`Tracer::OFF`]: none).
    pub tracer: &'a Tracer,
    /// Base of pointer URLs for Provenance, e.g.
    /// `https://nrls.example/consumer/FHIR/R4/DocumentReference`.
    pub pointer_url_base: &'a str,
}

/// The answer, and what the audit trail needs.
#[derive(Debug, Clone)]
pub struct FederatedRecord {
    /// The FHIR `collection` Bundle.
    pub bundle: Value,
    /// Every registered source and every custodian holding a record, with its
    /// outcome, sorted by ODS code. Audit "sources queried" from this
    /// ([`SourceReport::was_called`]).
    pub sources: Vec<SourceReport>,
    /// True when some source holding a record did not contribute.
    pub partial: bool,
    /// Converged entries in the Bundle.
    pub entries: usize,
}

/// The fan-out client. Build one per process and share it: it owns the
/// connection pool, the circuit breakers and the source tokens.
#[derive(Debug)]
pub struct Federator {
    registry: RwLock<Arc<SourceRegistry>>,
    http: Client,
    breakers: Breakers,
    tokens: Arc<Tokens>,
    deadline: Duration,
    limits: FetchLimits,
    rules: Rules,
}

impl Federator {
    /// A federator whose https trusts only the built-in roots.
    pub fn new(
        registry: SourceRegistry,
        config: &FederationConfig,
    ) -> Result<Self, FederationError> {
        Federator::with_tls(registry, config, &auth::OutboundTls::default())
    }

    /// A federator whose https trusts the built-in roots and `tls`'s extra CA.
    pub fn with_tls(
        registry: SourceRegistry,
        config: &FederationConfig,
        tls: &auth::OutboundTls,
    ) -> Result<Self, FederationError> {
        for (value, name) in [
            (config.overall_deadline_ms, "overall_deadline_ms"),
            (u64::from(config.failure_threshold), "failure_threshold"),
            (config.max_pages as u64, "max_pages"),
            (config.max_response_bytes as u64, "max_response_bytes"),
        ] {
            if value == 0 {
                return Err(FederationError::Setting(name));
            }
        }
        // One client for every source: keep-alive connections are reused
        // across requests. Redirects are never followed: a source must not be
        // able to send nrls to a URL that is not registered.
        let http = tls
            .client_builder()
            .pool_max_idle_per_host(config.max_idle_connections_per_source)
            .pool_idle_timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_millis(config.overall_deadline_ms))
            .tcp_nodelay(true)
            .user_agent(concat!("nrls-federation/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FederationError::Client(e.to_string()))?;
        Ok(Federator {
            registry: RwLock::new(Arc::new(registry)),
            http,
            breakers: Breakers::new(BreakerSettings {
                failure_threshold: config.failure_threshold,
                cool_down: Duration::from_secs(config.cool_down_seconds),
            }),
            tokens: Arc::new(Tokens::default()),
            deadline: Duration::from_millis(config.overall_deadline_ms),
            limits: FetchLimits {
                max_pages: config.max_pages,
                max_response_bytes: config.max_response_bytes,
            },
            rules: Rules {
                condition_onset_window_days: config.condition_onset_window_days,
            },
        })
    }

    /// The current registry.
    pub fn registry(&self) -> Arc<SourceRegistry> {
        self.registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Swaps in a new registry (the admin API's hook); requests in flight
    /// finish with the one they started with.
    pub fn replace_registry(&self, registry: SourceRegistry) {
        *self
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(registry);
    }

    /// Retrieves, converges and assembles one patient's shared care record.
    /// Never fails: every source problem is reported in the answer.
    pub async fn retrieve(
        &self,
        request: Retrieval<'_>,
        visible: impl Fn(&PointerRecord) -> bool,
    ) -> FederatedRecord {
        let started = Instant::now();
        let deadline = started + self.deadline;
        let registry = self.registry();
        let planned = plan(request.pointers, &registry, request.query, visible);
        let mut reports = planned.not_asked;
        let mut pending: BTreeMap<usize, Ask> = BTreeMap::new();
        let mut tasks = JoinSet::new();
        for (index, ask) in planned.asks.into_iter().enumerate() {
            if let Admission::Refused {
                consecutive_failures,
                retry_in,
            } = self.breakers.admit(&ask.source.ods, started)
            {
                let detail = format!(
                    "refused: not called because its last {consecutive_failures} calls failed (circuit open); it will be tried again in {} s",
                    retry_in.as_secs().max(1)
                );
                reports.push(report(&ask, SourceStatus::Refused, detail, None, None));
                continue;
            }
            let budget = ask
                .source
                .timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let capped = budget < ask.source.timeout;
            let (traceparent, call) = spans::begin(request.trace, request.tracer, &ask.source);
            let context = FetchContext {
                http: self.http.clone(),
                source: ask.source.clone(),
                nhs_number: request.query.subject.to_string(),
                bearer: None,
                correlation_id: request.correlation_id.map(str::to_owned),
                traceparent,
                limits: self.limits,
            };
            let tokens = self.tokens.clone();
            let types = ask.resource_types.clone();
            pending.insert(index, ask);
            tasks.spawn(async move {
                let begun = Instant::now();
                let work = async move {
                    let bearer = tokens.bearer(&context.http, &context.source).await?;
                    fetch_source(FetchContext { bearer, ..context }, &types).await
                };
                let result = tokio::time::timeout(budget, work).await;
                let elapsed = begun.elapsed();
                if let Some(call) = call {
                    let end = match &result {
                        Ok(Ok(fetched)) => CallEnd::Answered(fetched.status),
                        Ok(Err(error)) => CallEnd::Failed(error),
                        Err(_) => CallEnd::TimedOut,
                    };
                    call.finish(elapsed, end);
                }
                (index, result.map_err(|_| (budget, capped)), elapsed)
            });
        }

        let mut answers: BTreeMap<OdsCode, Fetched> = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((index, result, elapsed)) = joined else {
                continue;
            };
            let Some(ask) = pending.remove(&index) else {
                continue;
            };
            let finished = Instant::now();
            let ms = Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
            match result {
                Ok(Ok(fetched)) => {
                    self.breakers.record(&ask.source.ods, true, finished);
                    let detail = ok_detail(&ask, &fetched, elapsed);
                    let mut r = report(&ask, SourceStatus::Ok, detail, ms, Some(&fetched));
                    r.data_age = fetched.data_age.clone();
                    reports.push(r);
                    answers.insert(ask.source.ods.clone(), fetched);
                }
                Ok(Err(error)) => {
                    self.breakers.record(&ask.source.ods, false, finished);
                    let status = SourceStatus::Error;
                    reports.push(report(&ask, status, error_detail(&error), ms, None));
                }
                Err((budget, capped)) => {
                    self.breakers.record(&ask.source.ods, false, finished);
                    let limit = if capped {
                        "the overall deadline"
                    } else {
                        "its time-out"
                    };
                    let detail = format!(
                        "timed out: no complete answer within {} ms ({limit}); nothing from it is shown",
                        budget.as_millis()
                    );
                    reports.push(report(&ask, SourceStatus::TimedOut, detail, ms, None));
                }
            }
        }
        // A task that died without an answer (it cannot, short of a bug) is still reported.
        for ask in pending.into_values() {
            let detail = "error: the request to this source failed inside nrls".to_owned();
            reports.push(report(&ask, SourceStatus::Error, detail, None, None));
        }
        reports.sort_by(|a, b| a.ods.cmp(&b.ods));
        self.assemble(request, &registry, answers, reports)
    }

    fn assemble(
        &self,
        request: Retrieval<'_>,
        registry: &SourceRegistry,
        mut answers: BTreeMap<OdsCode, Fetched>,
        reports: Vec<SourceReport>,
    ) -> FederatedRecord {
        let now = now_instant();
        let now_unix = OffsetDateTime::now_utc().unix_timestamp();
        let mut contributions = BTreeMap::new();
        let mut input = Vec::new();
        let mut excluded_by_date = 0;
        for report in reports.iter().filter(|r| r.status == SourceStatus::Ok) {
            let (Some(source), Some(fetched)) =
                (registry.get(&report.ods), answers.remove(&report.ods))
            else {
                continue;
            };
            contributions.insert(
                report.ods.clone(),
                Contribution {
                    name: source.name.clone(),
                    base_url: source.base_url.clone(),
                    recorded: now.clone(),
                    pointers: report.pointers.clone(),
                },
            );
            for resource in fetched.resources {
                if request.query.dates.admits(&resource) {
                    input.push(SourcedResource {
                        source: report.ods.clone(),
                        resource,
                    });
                } else {
                    excluded_by_date += 1;
                }
            }
        }
        let converged = convergence::converge(input, &self.rules);
        let (bundle, partial) = assemble::bundle(&Assembly {
            convergence: &converged,
            reports: &reports,
            contributions: &contributions,
            pointer_url_base: request.pointer_url_base,
            sections: &request.query.sections,
            excluded_by_date,
            now: &now,
            now_unix,
        });
        FederatedRecord {
            bundle,
            entries: converged.entries.len(),
            sources: reports,
            partial,
        }
    }
}

fn report(
    ask: &Ask,
    status: SourceStatus,
    detail: String,
    elapsed_ms: Option<u64>,
    fetched: Option<&Fetched>,
) -> SourceReport {
    let mut detail = detail;
    for note in &ask.notes {
        detail.push_str("; ");
        detail.push_str(note);
    }
    SourceReport {
        ods: ask.source.ods.clone(),
        name: Some(ask.source.name.clone()),
        status,
        detail,
        holds_record: true,
        pointers: ask.pointers.clone(),
        data_age: None,
        resources: fetched.map_or(0, |f| f.resources.len()),
        elapsed_ms,
    }
}

fn ok_detail(ask: &Ask, fetched: &Fetched, elapsed: Duration) -> String {
    format!(
        "ok: answered in {} ms with {} resources ({})",
        elapsed.as_millis(),
        fetched.resources.len(),
        ask.resource_types.join(", ")
    )
}

fn error_detail(error: &FetchError) -> String {
    format!("error: the source {error}; nothing from it is shown")
}
