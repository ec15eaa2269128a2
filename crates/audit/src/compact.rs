//! The compact record (format 2): the facts of one access in a small,
//! versioned binary form, which is what the chain hashes and the backends
//! store. The FHIR `AuditEvent` is rendered from it when the trail is read
//! ([`decode`] then [`AuditFacts::to_event`]), so a record costs ~150 bytes
//! instead of ~4 KB of JSON, and building one needs no JSON at all.
//!
//! Layout (all integers LEB128 varints unless said otherwise; a string is
//! its byte length then its UTF-8 bytes):
//!
//! ```text
//! FORMAT (u8 = 2)
//! kind (u8): interaction (bits 0-2) | outcome (bits 3-4)
//! flags (u16, little endian): which optional parts follow, and how
//! recorded: Unix ms when F_RECORDED_MS (the text renders back exactly), else string
//! node, client id: strings
//! [F_DESC] outcome description        [F_REQUEST_ID] request id: 16 bytes when
//! [F_ORG] organisation                   F_REQUEST_UUID (a lowercase UUID), else string
//! [F_USER] person id, [F_ROLE] role   [F_PURPOSE] purpose of use
//! [F_PATIENT] NHS number (integer)
//! resources: count, then each: prefix code (u8) and the rest as a string
//! [F_QUERY] prefix code (u8) and the rest as a string
//! [F_ACCESS] basis, decision (prefix code and rest), [F_REASON] reason; F_ALERT, F_OVERRIDDEN
//! [F_SESSION] session event code (u8)   [F_LOGIN_SUBJECT] NHS login sub
//! ```
//!
//! Prefix codes replace the few long constant prefixes (`DocumentReference/`,
//! the NHS number search parameter) and the access codes by one byte. The tables below are part
//! of format 2 and never change; a new prefix needs a new format.
//! The encoding is canonical for a given set of facts, and [`decode`] is
//! total: any bytes either decode to facts that encode back to the same
//! bytes, or are refused (verify then reports the record as modified).

use std::borrow::Cow;

use domain::NhsNumber;

use crate::event::{AccessFacts, AuditFacts, AuditOutcome, AuditUser, Interaction, SessionEvent};

/// The first byte of every compact record.
pub const FORMAT: u8 = 2;

const F_RECORDED_MS: u16 = 1;
const F_DESC: u16 = 1 << 1;
const F_REQUEST_ID: u16 = 1 << 2;
const F_REQUEST_UUID: u16 = 1 << 3;
const F_ORG: u16 = 1 << 4;
const F_USER: u16 = 1 << 5;
const F_ROLE: u16 = 1 << 6;
const F_PURPOSE: u16 = 1 << 7;
const F_PATIENT: u16 = 1 << 8;
const F_QUERY: u16 = 1 << 9;
const F_ACCESS: u16 = 1 << 10;
const F_REASON: u16 = 1 << 11;
const F_ALERT: u16 = 1 << 12;
const F_OVERRIDDEN: u16 = 1 << 13;
/// A patient's NHS login session event (one byte: its code) rather than a
/// RESTful operation.
const F_SESSION: u16 = 1 << 14;
/// The NHS login `sub` of the patient acting.
const F_LOGIN_SUBJECT: u16 = 1 << 15;

/// Prefixes of `AuditFacts::resources` (code = index; 0 is none).
const RESOURCE_PREFIXES: &[&str] = &["", "DocumentReference/", "AuditEvent/"];

/// Prefixes of `AuditFacts::query` (code = index; 0 is none): the consumer
/// search by NHS number as the API canonicalises it, the same unencoded,
/// and the patient-facing pages' query.
const QUERY_PREFIXES: &[&str] = &[
    "",
    "subject%3Aidentifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C",
    "subject:identifier=https://fhir.nhs.uk/Id/nhs-number|",
    "patient=",
];

/// Access bases (code = index; 0 is none).
const BASES: &[&str] = &["", "recorded", "self-claimed", "break-glass"];

/// The access policy's reason codes (code = index; 0 is none).
const DECISIONS: &[&str] = &[
    "",
    "PRODUCER_OWN",
    "RECORDED_RELATIONSHIP",
    "SELF_CLAIMED",
    "BREAK_GLASS",
    "TRUSTED_APP",
    "PURPOSE_NOT_DIRECT_CARE",
    "NO_LEGITIMATE_RELATIONSHIP",
    "SELF_CLAIM_REASON_REQUIRED",
    "BREAK_GLASS_REASON_REQUIRED",
    "USER_IDENTITY_REQUIRED",
    "USER_ORGANISATION_MISMATCH",
    "CLINICIAN_IDENTITY_REQUIRED",
    "SENSITIVE_HIDDEN",
    "PATIENT_OBJECTION",
    "NOT_CUSTODIAN",
];

const INTERACTIONS: [Interaction; 5] = [
    Interaction::Search,
    Interaction::Read,
    Interaction::Create,
    Interaction::Update,
    Interaction::Delete,
];

const OUTCOMES: [AuditOutcome; 3] = [
    AuditOutcome::Success,
    AuditOutcome::MinorFailure,
    AuditOutcome::SeriousFailure,
];

/// Why bytes are not a compact record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a compact audit record: {0}")]
pub struct DecodeError(&'static str);

/// The compact record of `facts` observed by `node`.
pub fn encode(facts: &AuditFacts, node: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(192);
    let mut flags = 0u16;
    let recorded_ms = recorded_ms(&facts.recorded);
    let set = |flags: &mut u16, flag: u16, on: bool| {
        if on {
            *flags |= flag;
        }
    };
    set(&mut flags, F_RECORDED_MS, recorded_ms.is_some());
    set(&mut flags, F_DESC, facts.outcome_desc.is_some());
    set(&mut flags, F_REQUEST_ID, facts.request_id.is_some());
    let uuid = facts.request_id.as_deref().and_then(uuid_bytes);
    set(&mut flags, F_REQUEST_UUID, uuid.is_some());
    set(&mut flags, F_ORG, facts.organisation.is_some());
    set(&mut flags, F_USER, facts.user.is_some());
    set(
        &mut flags,
        F_ROLE,
        facts.user.as_ref().is_some_and(|u| u.role_code.is_some()),
    );
    set(&mut flags, F_PURPOSE, facts.purpose_of_use.is_some());
    set(&mut flags, F_PATIENT, facts.patient.is_some());
    set(&mut flags, F_QUERY, facts.query.is_some());
    if let Some(access) = &facts.access {
        flags |= F_ACCESS;
        set(&mut flags, F_REASON, access.reason.is_some());
        set(&mut flags, F_ALERT, access.alert);
        set(&mut flags, F_OVERRIDDEN, access.objection_overridden);
    }
    set(&mut flags, F_SESSION, facts.session.is_some());
    set(&mut flags, F_LOGIN_SUBJECT, facts.login_subject.is_some());
    out.push(FORMAT);
    out.push(interaction_code(facts.interaction) | (outcome_code(facts.outcome) << 3));
    out.extend_from_slice(&flags.to_le_bytes());
    match recorded_ms {
        Some(ms) => varint(&mut out, ms),
        None => string(&mut out, &facts.recorded),
    }
    string(&mut out, node);
    string(&mut out, &facts.client_id);
    if let Some(desc) = &facts.outcome_desc {
        string(&mut out, desc);
    }
    match (uuid, &facts.request_id) {
        (Some(bytes), _) => out.extend_from_slice(&bytes),
        (None, Some(id)) => string(&mut out, id),
        (None, None) => {}
    }
    if let Some(org) = &facts.organisation {
        string(&mut out, org);
    }
    if let Some(user) = &facts.user {
        string(&mut out, &user.person_id);
        if let Some(role) = &user.role_code {
            string(&mut out, role);
        }
    }
    if let Some(purpose) = &facts.purpose_of_use {
        string(&mut out, purpose);
    }
    if let Some(patient) = facts.patient {
        varint(&mut out, patient.as_u64());
    }
    varint(&mut out, facts.resources.len() as u64);
    for resource in &facts.resources {
        prefixed(&mut out, RESOURCE_PREFIXES, resource);
    }
    if let Some(query) = &facts.query {
        prefixed(&mut out, QUERY_PREFIXES, query);
    }
    if let Some(access) = &facts.access {
        prefixed(&mut out, BASES, &access.basis);
        prefixed(&mut out, DECISIONS, &access.decision);
        if let Some(reason) = &access.reason {
            string(&mut out, reason);
        }
    }
    if let Some(session) = facts.session {
        out.push(session.code());
    }
    if let Some(subject) = &facts.login_subject {
        string(&mut out, subject);
    }
    out
}

/// The facts and observer node of a compact record.
pub fn decode(bytes: &[u8]) -> Result<(AuditFacts, String), DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    if r.byte()? != FORMAT {
        return Err(DecodeError("unknown format"));
    }
    let kind = r.byte()?;
    let interaction = *INTERACTIONS
        .get(usize::from(kind & 0b111))
        .ok_or(DecodeError("interaction"))?;
    let outcome = *OUTCOMES
        .get(usize::from(kind >> 3))
        .ok_or(DecodeError("outcome"))?;
    let flags = u16::from_le_bytes([r.byte()?, r.byte()?]);
    // All 16 flag bits are assigned: a new optional part needs a new format.
    let has = |flag: u16| flags & flag != 0;
    let recorded = if has(F_RECORDED_MS) {
        let ms = r.varint()?;
        let text = format_ms(ms).ok_or(DecodeError("recorded"))?;
        // Canonical: text that renders back as ms is always stored as ms.
        if recorded_ms(&text) != Some(ms) {
            return Err(DecodeError("recorded"));
        }
        text
    } else {
        let text = r.string()?;
        if recorded_ms(&text).is_some() {
            return Err(DecodeError("recorded not canonical"));
        }
        text
    };
    let node = r.string()?;
    let client_id = r.string()?;
    let outcome_desc = r.optional(has(F_DESC))?;
    let request_id = match (has(F_REQUEST_ID), has(F_REQUEST_UUID)) {
        (true, true) => Some(uuid_text(r.take(16)?)),
        (true, false) => {
            let id = r.string()?;
            if uuid_bytes(&id).is_some() {
                return Err(DecodeError("request id not canonical"));
            }
            Some(id)
        }
        (false, false) => None,
        (false, true) => return Err(DecodeError("request id flags")),
    };
    let organisation = r.optional(has(F_ORG))?;
    let user = match (has(F_USER), has(F_ROLE)) {
        (true, role) => Some(AuditUser {
            person_id: r.string()?,
            role_code: r.optional(role)?,
        }),
        (false, false) => None,
        (false, true) => return Err(DecodeError("role without user")),
    };
    let purpose_of_use = r.optional(has(F_PURPOSE))?;
    let patient = if has(F_PATIENT) {
        Some(NhsNumber::from_u64(r.varint()?).map_err(|_| DecodeError("patient"))?)
    } else {
        None
    };
    let count = r.varint()?;
    // Each resource takes at least two bytes: bounds the allocation.
    if count > (bytes.len() as u64) {
        return Err(DecodeError("resource count"));
    }
    let mut resources = Vec::with_capacity(count as usize);
    for _ in 0..count {
        resources.push(r.prefixed(RESOURCE_PREFIXES)?);
    }
    let query = if has(F_QUERY) {
        Some(r.prefixed(QUERY_PREFIXES)?)
    } else {
        None
    };
    let access = if has(F_ACCESS) {
        let basis = r.prefixed(BASES)?;
        let decision = r.prefixed(DECISIONS)?;
        Some(AccessFacts {
            basis: Cow::Owned(basis),
            decision: Cow::Owned(decision),
            reason: r.optional(has(F_REASON))?,
            alert: has(F_ALERT),
            objection_overridden: has(F_OVERRIDDEN),
        })
    } else if flags & (F_REASON | F_ALERT | F_OVERRIDDEN) != 0 {
        return Err(DecodeError("access flags without access"));
    } else {
        None
    };
    let session = if has(F_SESSION) {
        Some(SessionEvent::of_byte(r.byte()?).ok_or(DecodeError("session event"))?)
    } else {
        None
    };
    let login_subject = r.optional(has(F_LOGIN_SUBJECT))?;
    if r.at != bytes.len() {
        return Err(DecodeError("trailing bytes"));
    }
    let facts = AuditFacts {
        interaction,
        outcome,
        outcome_desc,
        recorded,
        request_id,
        client_id,
        organisation,
        user,
        purpose_of_use,
        patient,
        resources,
        query,
        access,
        session,
        login_subject,
    };
    Ok((facts, node))
}

fn interaction_code(interaction: Interaction) -> u8 {
    match interaction {
        Interaction::Search => 0,
        Interaction::Read => 1,
        Interaction::Create => 2,
        Interaction::Update => 3,
        Interaction::Delete => 4,
    }
}

fn outcome_code(outcome: AuditOutcome) -> u8 {
    match outcome {
        AuditOutcome::Success => 0,
        AuditOutcome::MinorFailure => 1,
        AuditOutcome::SeriousFailure => 2,
    }
}

/// `text` as Unix ms, when [`format_ms`] gives exactly `text` back.
pub(crate) fn recorded_ms(text: &str) -> Option<u64> {
    let ms = u64::try_from(crate::fields::parse_instant_ms(text)?).ok()?;
    (format_ms(ms).as_deref() == Some(text)).then_some(ms)
}

/// Unix ms as `now_rfc3339` writes an instant (how a stored `appended_ms`
/// becomes the `appended_at` text the chain hashes).
pub fn format_ms(ms: u64) -> Option<String> {
    let nanos = i128::from(ms).checked_mul(1_000_000)?;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn string(out: &mut Vec<u8>, text: &str) {
    varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// The longest prefix of the table that `text` starts with (0: none).
fn prefixed(out: &mut Vec<u8>, table: &[&str], text: &str) {
    let (code, rest) = table
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(code, p)| Some((code, text.strip_prefix(p)?)))
        .min_by_key(|(_, rest)| rest.len())
        .unwrap_or((0, text));
    out.push(code as u8);
    string(out, rest);
}

/// The 16 bytes of a lowercase hyphenated UUID.
fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = b.iter().filter(|&&c| c != b'-');
    for byte in &mut out {
        let hi = lower_hex(*digits.next()?)?;
        let lo = lower_hex(*digits.next()?)?;
        *byte = (hi << 4) | lo;
    }
    Some(out)
}

fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn uuid_text(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError("length"))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(DecodeError("truncated"))?;
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError("varint overflow"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                // Canonical: no trailing zero groups.
                if byte == 0 && shift > 0 {
                    return Err(DecodeError("varint not canonical"));
                }
                return Ok(value);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::try_from(self.varint()?).map_err(|_| DecodeError("length"))?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError("not UTF-8"))
    }

    fn optional(&mut self, present: bool) -> Result<Option<String>, DecodeError> {
        present.then(|| self.string()).transpose()
    }

    fn prefixed(&mut self, table: &[&str]) -> Result<String, DecodeError> {
        let code = usize::from(self.byte()?);
        let prefix = table.get(code).ok_or(DecodeError("prefix code"))?;
        let rest = self.string()?;
        let text = format!("{prefix}{rest}");
        // Canonical: the encoder always takes the longest prefix.
        let mut again = Vec::new();
        prefixed(&mut again, table, &text);
        if again.first() != Some(&(code as u8)) {
            return Err(DecodeError("prefix not canonical"));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests;
