//! A deterministic synthetic dataset: N pointers over patients of the 999
//! range, each patient holding 1 to 20 pointers (most hold few), of every
//! pointer type, from 200 custodians. The same seed gives the same bytes, so a
//! benchmark can regenerate the patients it searches for instead of storing them.

use domain::catalogue::{Catalogue, PointerType};
use domain::{NhsNumber, OdsCode};

use super::{PointerSpec, write_document_reference};

/// Synthetic custodians: 150 trust-like codes (`RA0`..`RO9`) and 50 GP
/// practices (`Y90000`..`Y90049`).
pub const CUSTODIANS: usize = 200;
/// Most pointers one patient gets.
pub const MAX_PER_PATIENT: usize = 20;
/// Nine-digit stems of the 999 range: `999000000..=999999999`.
const STEMS: u64 = 1_000_000;
/// Five years of creation times.
const CREATED_SPAN: u32 = 5 * 336 * 86_400;

/// Parameters of one dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub pointers: u64,
    pub seed: u64,
    custodians: Vec<OdsCode>,
    /// Cumulative weights of 1..=20 pointers per patient, out of `u32::MAX`.
    per_patient_cdf: [u32; MAX_PER_PATIENT],
}

/// One generated pointer: its patient and its JSON.
pub struct GeneratedPointer<'a> {
    pub patient: u64,
    pub nhs_number: NhsNumber,
    pub json: &'a str,
}

impl Dataset {
    pub fn new(pointers: u64, seed: u64) -> Dataset {
        let custodians = (0..CUSTODIANS)
            .filter_map(|i| {
                let code = if i < 150 {
                    format!("R{}{}", char::from(b'A' + (i / 10) as u8), i % 10)
                } else {
                    format!("Y9{:04}", i - 150)
                };
                OdsCode::parse(&code)
            })
            .collect();
        // P(k) proportional to k^-1.5: about 45% of patients hold one pointer,
        // a few hold 20; the mean is about 3.3.
        let weights: Vec<f64> = (1..=MAX_PER_PATIENT)
            .map(|k| (k as f64).powf(-1.5))
            .collect();
        let sum: f64 = weights.iter().sum();
        let mut per_patient_cdf = [0u32; MAX_PER_PATIENT];
        let mut acc = 0.0;
        for (slot, w) in per_patient_cdf.iter_mut().zip(&weights) {
            acc += w / sum;
            *slot = (acc.min(1.0) * f64::from(u32::MAX)) as u32;
        }
        per_patient_cdf[MAX_PER_PATIENT - 1] = u32::MAX;
        Dataset {
            pointers,
            seed,
            custodians,
            per_patient_cdf,
        }
    }

    /// The custodians pointers are spread over.
    pub fn custodians(&self) -> &[OdsCode] {
        &self.custodians
    }

    /// The NHS number of patient `p`. Patients are scattered over the 999 range
    /// (not in ascending order, as real loads are not). The range holds about
    /// 909,000 valid numbers: datasets beyond about 3M pointers wrap, and the
    /// later patients share numbers with earlier ones.
    pub fn nhs_number(&self, p: u64) -> NhsNumber {
        // 3^13 is coprime with 10^6, so this visits every stem once per lap.
        let mut slot = (p.wrapping_add(self.seed) % STEMS) * 1_594_323 % STEMS;
        loop {
            // A stem whose check digit would be 10 is never issued: take the next.
            if let Some(n) = NhsNumber::from_stem(999_000_000 + slot as u32) {
                return n;
            }
            slot = (slot + 1) % STEMS;
        }
    }

    /// How many pointers patient `p` holds (before the dataset's end cuts the
    /// last patient short).
    pub fn pointers_of(&self, p: u64) -> usize {
        let draw = (Rng::new(self.seed, p, 0).next() >> 32) as u32;
        self.per_patient_cdf
            .iter()
            .position(|&c| draw <= c)
            .unwrap_or(MAX_PER_PATIENT - 1)
            + 1
    }

    /// Number of patients the dataset covers (the last may be cut short).
    pub fn patients(&self) -> u64 {
        let mut written = 0u64;
        let mut p = 0u64;
        while written < self.pointers {
            written += self.pointers_of(p) as u64;
            p += 1;
        }
        p
    }

    /// Calls `emit` for every pointer, in patient order. The JSON buffer is
    /// reused between calls.
    pub fn generate<E>(
        &self,
        mut emit: impl FnMut(GeneratedPointer<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let catalogue = Catalogue::nrl_v3();
        let types = catalogue.types();
        let mut json = String::with_capacity(2048);
        let mut local = String::with_capacity(32);
        let mut written = 0u64;
        let mut p = 0u64;
        while written < self.pointers {
            let nhs_number = self.nhs_number(p);
            let count = (self.pointers_of(p) as u64).min(self.pointers - written);
            let mut rng = Rng::new(self.seed, p, 1);
            for k in 0..count {
                let pointer_type: &PointerType = &types[rng.below(types.len() as u64) as usize];
                let custodian = &self.custodians[rng.below(self.custodians.len() as u64) as usize];
                local.clear();
                push_local_id(&mut local, self.seed, p, k);
                json.clear();
                write_document_reference(
                    &PointerSpec {
                        nhs_number,
                        custodian,
                        pointer_type,
                        local_id: &local,
                        created_offset: rng.below(u64::from(CREATED_SPAN)) as u32,
                    },
                    &mut json,
                );
                emit(GeneratedPointer {
                    patient: p,
                    nhs_number,
                    json: &json,
                })?;
            }
            written += count;
            p += 1;
        }
        Ok(())
    }
}

/// `g<seed>p<patient>n<k>` in base 36: unique per dataset, so ids and
/// masterIdentifiers never clash within one, and short.
fn push_local_id(out: &mut String, seed: u64, patient: u64, k: u64) {
    out.push('g');
    push_base36(out, seed);
    out.push('p');
    push_base36(out, patient);
    out.push('n');
    push_base36(out, k);
}

fn push_base36(out: &mut String, mut n: u64) {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [0u8; 13];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|&b| char::from(b)));
}

/// SplitMix64: tiny, fast and good enough for synthetic data. One stream per
/// (seed, patient, purpose), so any patient can be regenerated on its own.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, patient: u64, purpose: u64) -> Rng {
        let mut rng = Rng(seed ^ patient.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (purpose << 56));
        rng.next();
        rng
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::permissions::TypeSet;
    use domain::validation::{ValidationContext, validate};
    use std::collections::{HashMap, HashSet};

    #[test]
    fn deterministic_valid_and_varied() {
        let dataset = Dataset::new(3_000, 7);
        let catalogue = Catalogue::nrl_v3();
        let mut lines = Vec::new();
        let mut per_patient: HashMap<u64, usize> = HashMap::new();
        dataset
            .generate(|g| {
                lines.push(g.json.to_owned());
                *per_patient.entry(g.patient).or_default() += 1;
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(lines.len(), 3_000);
        assert_eq!(per_patient.len() as u64, dataset.patients());
        let mut again = Vec::new();
        Dataset::new(3_000, 7)
            .generate(|g| {
                again.push(g.json.to_owned());
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(lines, again);

        let mut types = HashSet::new();
        let mut custodians = HashSet::new();
        let mut ids = HashSet::new();
        for line in &lines {
            let doc: fhir::DocumentReference = serde_json::from_str(line).unwrap();
            let custodian = OdsCode::parse(
                doc.custodian
                    .as_ref()
                    .unwrap()
                    .identifier
                    .as_ref()
                    .unwrap()
                    .value
                    .as_deref()
                    .unwrap(),
            )
            .unwrap();
            let ctx = ValidationContext {
                catalogue,
                caller: &custodian,
                permitted_types: TypeSet::all(catalogue),
            };
            let valid = validate(&doc, &ctx).unwrap_or_else(|i| panic!("{i:?}\n{line}"));
            assert!(valid.nhs_number.is_test_range());
            types.insert(valid.pointer_type.index);
            custodians.insert(custodian);
            assert!(ids.insert(valid.id.unwrap()));
        }
        assert_eq!(types.len(), catalogue.types().len());
        assert!(custodians.len() > 150, "{}", custodians.len());
        let singles = per_patient.values().filter(|&&n| n == 1).count();
        let max = per_patient.values().max().copied().unwrap();
        assert!(singles * 3 > per_patient.len(), "skewed toward few");
        assert!(max <= MAX_PER_PATIENT);
        let mean = lines[..].iter().map(String::len).sum::<usize>() / lines.len();
        // A complete NRL v3 pointer (both content extensions, context) is
        // about 1.6-1.9 KB of compact JSON.
        assert!((1_400..2_100).contains(&mean), "got {mean}");
    }

    #[test]
    fn patients_are_distinct_within_a_lap() {
        let dataset = Dataset::new(0, 1);
        let numbers: HashSet<_> = (0..10_000).map(|p| dataset.nhs_number(p)).collect();
        // A stem with no valid check digit borrows its neighbour's number.
        assert!(numbers.len() > 9_000, "{}", numbers.len());
    }
}
