//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the
//! `traceparent` header that carries one trace id across every service a
//! request touches.
//!
//! nrls accepts a caller's `traceparent`, logs its trace id on the request's
//! log line, and sends a `traceparent` with the same trace id on its own
//! outbound calls (the federation fan-out), so a request can be followed
//! through the logs of every hop. A request without a valid `traceparent`
//! starts a new trace.
//!
//! The same context names the spans nrls exports when OTLP export is on
//! ([`crate::otlp`], off by default; see docs/operations.md "Traces"): the
//! request's SERVER span is [`TraceContext::span_id`], its parent the
//! caller's span, and each outbound call gets a [`TraceContext::child`] whose
//! span id is the parent named in that call's `traceparent`.

use std::fmt::Write;

/// The header name, lower case as HTTP/2 requires.
pub const TRACEPARENT: &str = "traceparent";

/// Why a `traceparent` value was not accepted. The caller then starts a new
/// trace, as the specification requires; the reason is for debug logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("traceparent is not version-traceid-parentid-flags in lower-case hex")]
    Malformed,
    #[error("traceparent version ff is forbidden")]
    ForbiddenVersion,
    #[error("traceparent trace id or parent id is all zeros")]
    ZeroId,
}

/// The trace this request belongs to, and the span id nrls uses for its own
/// part of it. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    /// Our span: the parent id of any call we make.
    span_id: [u8; 8],
    /// The caller's span, when the trace came in with the request.
    parent_id: Option<[u8; 8]>,
    flags: u8,
}

impl TraceContext {
    /// Continues the caller's trace when `header` holds a valid
    /// `traceparent`, otherwise starts a new one.
    pub fn from_header(header: Option<&str>) -> TraceContext {
        TraceContext::from_header_or_root(header, false)
    }

    /// As [`TraceContext::from_header`]; a new trace is started with the
    /// sampled flag set to `sample_new_root`: on when nrls records spans
    /// itself, so the services it calls record their part too. A caller's
    /// flag is always kept (parent-based sampling).
    pub fn from_header_or_root(header: Option<&str>, sample_new_root: bool) -> TraceContext {
        header
            .and_then(|value| TraceContext::parse(value).ok())
            .unwrap_or_else(|| {
                let mut root = TraceContext::new_root();
                root.flags |= u8::from(sample_new_root);
                root
            })
    }

    /// Parses a `traceparent` value and gives this hop a fresh span id.
    pub fn parse(value: &str) -> Result<TraceContext, TraceParentError> {
        let value = value.trim();
        let bytes = value.as_bytes();
        // version(2) - trace id(32) - parent id(16) - flags(2)
        if bytes.len() < 55 || [2, 35, 52].iter().any(|&i| bytes[i] != b'-') {
            return Err(TraceParentError::Malformed);
        }
        let version = hex::<1>(&value[0..2])?[0];
        if version == 0xff {
            return Err(TraceParentError::ForbiddenVersion);
        }
        // Version 00 is exactly 55 characters; a later version may append
        // fields after another dash, which we ignore.
        if (version == 0 && bytes.len() != 55) || (bytes.len() > 55 && bytes[55] != b'-') {
            return Err(TraceParentError::Malformed);
        }
        let trace_id = hex::<16>(&value[3..35])?;
        let parent_id = hex::<8>(&value[36..52])?;
        let flags = hex::<1>(&value[53..55])?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return Err(TraceParentError::ZeroId);
        }
        Ok(TraceContext {
            trace_id,
            span_id: random_span_id(),
            parent_id: Some(parent_id),
            flags,
        })
    }

    /// A new trace, sampled flag off.
    pub fn new_root() -> TraceContext {
        let mut trace_id = [0u8; 16];
        fill_random(&mut trace_id);
        TraceContext {
            trace_id,
            span_id: random_span_id(),
            parent_id: None,
            flags: 0,
        }
    }

    /// The 32-hex-digit trace id, as logged.
    pub fn trace_id(&self) -> String {
        to_hex(&self.trace_id)
    }

    /// This hop's 16-hex-digit span id.
    pub fn span_id(&self) -> String {
        to_hex(&self.span_id)
    }

    /// The caller's span id, if the trace came with the request.
    pub fn parent_id(&self) -> Option<String> {
        self.parent_id.as_ref().map(|id| to_hex(id))
    }

    /// Whether the caller asked for the trace to be recorded.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The context of an outbound call made while handling this request:
    /// same trace and flags, a fresh span id of its own (the call's CLIENT
    /// span), this span as its parent. Send the child's
    /// [`TraceContext::outbound_traceparent`], so the callee's spans hang
    /// under the call's span.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: random_span_id(),
            parent_id: Some(self.span_id),
            flags: self.flags,
        }
    }

    pub(crate) fn trace_id_bytes(&self) -> [u8; 16] {
        self.trace_id
    }

    pub(crate) fn span_id_bytes(&self) -> [u8; 8] {
        self.span_id
    }

    pub(crate) fn parent_id_bytes(&self) -> Option<[u8; 8]> {
        self.parent_id
    }

    /// The `traceparent` to send on an outbound call made while handling
    /// this request: same trace, our span as the parent, the caller's flags.
    pub fn outbound_traceparent(&self) -> String {
        let mut value = String::with_capacity(55);
        value.push_str("00-");
        value.push_str(&to_hex(&self.trace_id));
        value.push('-');
        value.push_str(&to_hex(&self.span_id));
        let _ = write!(value, "-{:02x}", self.flags);
        value
    }

    /// Headers for an outbound HTTP call, e.g. with reqwest:
    /// `for (name, value) in trace.outbound_headers() { request = request.header(name, value) }`.
    pub fn outbound_headers(&self) -> [(&'static str, String); 1] {
        [(TRACEPARENT, self.outbound_traceparent())]
    }
}

fn hex<const N: usize>(text: &str) -> Result<[u8; N], TraceParentError> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return Err(TraceParentError::Malformed);
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

/// Lower-case hex only: the specification forbids upper case.
fn nibble(digit: u8) -> Result<u8, TraceParentError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        _ => Err(TraceParentError::Malformed),
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}

fn random_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    fill_random(&mut id);
    id
}

/// Random ids from the OS. Should the OS refuse (it does not on Linux once
/// booted), fall back to the clock and a counter: ids must be unique, not
/// secret, and never all zeros.
fn fill_random(out: &mut [u8]) {
    if getrandom::fill(out).is_ok() && out.iter().any(|b| *b != 0) {
        return;
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = (nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(32)) | 1;
    for (i, b) in out.iter_mut().enumerate() {
        *b = (mixed >> ((i % 8) * 8)) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn continues_a_valid_trace() {
        let trace = TraceContext::parse(EXAMPLE).unwrap();
        assert_eq!(trace.trace_id(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(trace.parent_id().as_deref(), Some("b7ad6b7169203331"));
        assert!(trace.sampled());
        let out = trace.outbound_traceparent();
        assert_eq!(out.len(), 55);
        assert!(out.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        assert!(out.ends_with("-01"));
        // Our span is the parent of outbound calls, not the caller's.
        assert!(!out.contains("b7ad6b7169203331"));
        assert_eq!(
            TraceContext::parse(&out).unwrap().trace_id(),
            trace.trace_id()
        );
    }

    #[test]
    fn refuses_what_the_specification_refuses() {
        let cases = [
            ("", TraceParentError::Malformed),
            (
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                TraceParentError::Malformed,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
                TraceParentError::Malformed,
            ),
            (
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                TraceParentError::ForbiddenVersion,
            ),
            (
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                TraceParentError::ZeroId,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                TraceParentError::ZeroId,
            ),
            (
                "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                TraceParentError::Malformed,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
                TraceParentError::Malformed,
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(TraceContext::parse(value), Err(expected), "{value}");
        }
        // A future version may carry more fields.
        let future = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-more";
        assert!(TraceContext::parse(future).is_ok());
    }

    #[test]
    fn starts_a_new_trace_without_a_valid_header() {
        let a = TraceContext::from_header(None);
        let b = TraceContext::from_header(Some("garbage"));
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(a.trace_id().len(), 32);
        assert!(a.parent_id().is_none());
        assert!(!a.sampled());
        assert!(TraceContext::parse(&a.outbound_traceparent()).is_ok());
        // When nrls records spans, the traces it starts are sampled.
        assert!(TraceContext::from_header_or_root(None, true).sampled());
        // A caller's decision stands either way.
        let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        assert!(!TraceContext::from_header_or_root(Some(unsampled), true).sampled());
        assert!(TraceContext::from_header_or_root(Some(EXAMPLE), false).sampled());
    }

    #[test]
    fn a_child_is_a_span_under_this_one() {
        let request = TraceContext::parse(EXAMPLE).unwrap();
        let call = request.child();
        assert_eq!(call.trace_id(), request.trace_id());
        assert_eq!(call.parent_id(), Some(request.span_id()));
        assert_ne!(call.span_id(), request.span_id());
        assert!(call.sampled());
        // The callee sees the call's span as its parent.
        let sent = TraceContext::parse(&call.outbound_traceparent()).unwrap();
        assert_eq!(sent.parent_id(), Some(call.span_id()));
    }
}
