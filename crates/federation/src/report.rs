//! What happened at each source: the completeness report of one request, and
//! the list an audit record is written from.

use domain::{OdsCode, PointerId};

/// The outcome of one source for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceStatus {
    /// Answered in time with a well-formed record.
    Ok,
    /// Did not answer within its time-out or the overall deadline.
    TimedOut,
    /// Answered with an error, a malformed or unsafe answer, or could not be reached.
    Error,
    /// Not called: its circuit breaker is open after repeated failures.
    Refused,
    /// Not called, for the reason given (no record, no registered source...).
    NotAsked,
}

impl SourceStatus {
    /// The code in the nrls source-status code system.
    pub fn code(self) -> &'static str {
        match self {
            SourceStatus::Ok => "ok",
            SourceStatus::TimedOut => "timed-out",
            SourceStatus::Error => "error",
            SourceStatus::Refused => "refused",
            SourceStatus::NotAsked => "not-asked",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            SourceStatus::Ok => "Answered",
            SourceStatus::TimedOut => "Timed out",
            SourceStatus::Error => "Error",
            SourceStatus::Refused => "Refused (circuit open)",
            SourceStatus::NotAsked => "Not asked",
        }
    }
}

/// Where the age of a source's data was read from, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeBasis {
    /// The search Bundle's `meta.lastUpdated`.
    BundleLastUpdated,
    /// The response `Last-Modified` header.
    LastModified,
    /// The newest `meta.lastUpdated` of the resources returned.
    ResourceLastUpdated,
    /// The response `Date` header (the source gave nothing better).
    ResponseDate,
}

impl AgeBasis {
    pub fn describe(self) -> &'static str {
        match self {
            AgeBasis::BundleLastUpdated => "the source Bundle's meta.lastUpdated",
            AgeBasis::LastModified => "the Last-Modified header",
            AgeBasis::ResourceLastUpdated => "the newest resource's meta.lastUpdated",
            AgeBasis::ResponseDate => "the response Date header",
        }
    }
}

/// How current a source's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataAge {
    /// FHIR instant the data is current as of.
    pub as_of: String,
    /// Unix seconds of `as_of`.
    pub as_of_unix: i64,
    pub basis: AgeBasis,
}

impl DataAge {
    /// Age in whole seconds at `now_unix` (never negative).
    pub fn age_seconds(&self, now_unix: i64) -> i64 {
        (now_unix - self.as_of_unix).max(0)
    }
}

/// One source in one request: asked or not, what came back, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    pub ods: OdsCode,
    /// The registered name; `None` for a custodian with no registered source.
    pub name: Option<String>,
    pub status: SourceStatus,
    /// A sentence for a person: why not asked, what went wrong, or what came back.
    pub detail: String,
    /// The caller may see a current Clinical summary pointer of this custodian
    /// for the patient: the custodian holds part of this patient's record.
    pub holds_record: bool,
    /// The pointers that led here (visible ones only).
    pub pointers: Vec<PointerId>,
    pub data_age: Option<DataAge>,
    /// Resources received (before date bounds and convergence).
    pub resources: usize,
    /// Time the source took, when it was called.
    pub elapsed_ms: Option<u64>,
}

impl SourceReport {
    /// True when this source makes the record partial: it holds part of the
    /// patient's record and that part is missing from the answer.
    pub fn makes_partial(&self) -> bool {
        self.holds_record && self.status != SourceStatus::Ok
    }

    /// True when nrls sent a request to the source.
    pub fn was_called(&self) -> bool {
        matches!(
            self.status,
            SourceStatus::Ok | SourceStatus::TimedOut | SourceStatus::Error
        )
    }
}
