//! Pointer JSON at rest: zstd with a dictionary trained on pointers.
//!
//! A 1.8 KB NRL pointer repeats the same keys, systems, URLs and extension
//! structure as every other pointer; a dictionary that already holds them lets
//! zstd store a pointer in a fraction of its size, where plain zstd (or the
//! page compression of a database) finds little to share inside one document.
//!
//! Dictionaries are versioned and live with the data: a backend keeps every
//! dictionary it has used in a table keyed by [`DictionaryId`], and each row
//! records the id it was compressed with. A later nrls may ship a better
//! dictionary under a new id; rows written with an older one stay readable
//! because their dictionary is still in the table, not only in the binary.
//! Rows written before compression (plain text, no dictionary id) stay
//! readable too.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use domain::PointerRecord;
use zstd::zstd_safe::{CCtx, CDict, DCtx, DDict};

/// Which dictionary a row was compressed with: the key of the backend's
/// dictionary table.
pub type DictionaryId = i64;

/// The dictionary this build compresses new rows with: 32 KB trained by the
/// zstd CLI (v1.5.4) on 20,000 NRL v3 pointers of every type, one file per
/// pointer (`nrls generate --pointers 20000 --seed 7`, then
/// `zstd --train samples/* --maxdict=32768`; docs/architecture.md). Seed 7, so
/// not the benchmark's own data (seed 1).
pub const CURRENT_ID: DictionaryId = 1;
/// The bytes of dictionary [`CURRENT_ID`].
pub const CURRENT: &[u8] = include_bytes!("compression/pointers-1.dict");

/// zstd level new rows are compressed at. Measured on 2,000 pointers with
/// this dictionary (docs/performance.md, "Pointer store"): level 3 gives
/// 106 B a pointer at ~180 MB/s (~10 µs a pointer); level 9 gains 10% of
/// size for 7× the time.
const LEVEL: i32 = 3;

/// Largest JSON a stored frame may claim to hold. A pointer is a few KB; a
/// frame header that claims more is damage, not data, and is not allocated.
const MAX_JSON: u64 = 16 * 1024 * 1024;

/// Why a stored value could not be turned back into JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("dictionary {0} is not in the store")]
    UnknownDictionary(DictionaryId),
    #[error("dictionary {0} cannot be loaded")]
    BadDictionary(DictionaryId),
    #[error("stored JSON dictionary {0} differs from this build's")]
    NotThisBuilds(DictionaryId),
    #[error("compressed JSON is damaged: {0}")]
    Damaged(&'static str),
    #[error("cannot compress: {0}")]
    Compress(&'static str),
}

thread_local! {
    // A context holds ~100 KB of working memory; one per thread, reused for
    // every row, instead of one per row.
    static COMPRESSOR: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

/// Compresses with the current dictionary and decompresses with any known one.
/// Shared by every connection of a store.
pub struct JsonCodec {
    encoder: CDict<'static>,
    decoders: RwLock<HashMap<DictionaryId, Arc<DDict<'static>>>>,
}

impl std::fmt::Debug for JsonCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonCodec")
            .field("current", &CURRENT_ID)
            .finish_non_exhaustive()
    }
}

impl JsonCodec {
    /// A codec that compresses with [`CURRENT`] and, so far, decompresses
    /// with it alone; [`JsonCodec::learn`] adds the store's other dictionaries.
    pub fn new() -> Result<JsonCodec, CodecError> {
        let encoder =
            CDict::try_create(CURRENT, LEVEL).ok_or(CodecError::BadDictionary(CURRENT_ID))?;
        let codec = JsonCodec {
            encoder,
            decoders: RwLock::new(HashMap::new()),
        };
        codec.learn(CURRENT_ID, CURRENT)?;
        Ok(codec)
    }

    /// Makes dictionary `id` (as stored) available to [`JsonCodec::decompress`].
    pub fn learn(&self, id: DictionaryId, dictionary: &[u8]) -> Result<(), CodecError> {
        let decoder = DDict::try_create(dictionary).ok_or(CodecError::BadDictionary(id))?;
        self.decoders
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::new(decoder));
        Ok(())
    }

    /// Makes a dictionary read from the store available, as
    /// [`JsonCodec::learn`]; a stored dictionary under [`CURRENT_ID`] that
    /// differs from this build's is refused, since rows compressed with one
    /// would not decode with the other.
    pub fn learn_stored(&self, id: DictionaryId, dictionary: &[u8]) -> Result<(), CodecError> {
        if id == CURRENT_ID && dictionary != CURRENT {
            return Err(CodecError::NotThisBuilds(id));
        }
        self.learn(id, dictionary)
    }

    /// Whether dictionary `id` is loaded.
    pub fn knows(&self, id: DictionaryId) -> bool {
        self.decoders
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&id)
    }

    /// `json` compressed with dictionary [`CURRENT_ID`].
    pub fn compress(&self, json: &str) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(json.len()));
        COMPRESSOR.with(|slot| {
            let mut slot = slot.borrow_mut();
            let cctx = match slot.as_mut() {
                Some(cctx) => cctx,
                None => slot.insert(CCtx::try_create().ok_or(CodecError::Compress("no memory"))?),
            };
            cctx.compress_using_cdict(&mut out, json.as_bytes(), &self.encoder)
                .map_err(|code| CodecError::Compress(zstd::zstd_safe::get_error_name(code)))
        })?;
        Ok(out)
    }

    /// The JSON of every record, compressed, in order: the batch split
    /// between the machine's cores (a bulk load's batch, before its
    /// transaction, so the database waits for SQL alone).
    pub fn compress_all(&self, records: &[PointerRecord]) -> Result<Vec<Vec<u8>>, CodecError> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let share = records.len().div_ceil(threads).max(1);
        let compress = |part: &[PointerRecord]| {
            part.iter()
                .map(|r| self.compress(&r.json))
                .collect::<Result<Vec<_>, _>>()
        };
        let parts: Vec<_> = std::thread::scope(|scope| {
            let mut chunks = records.chunks(share);
            let first = chunks.next().unwrap_or_default();
            let others: Vec<_> = chunks
                .map(|part| scope.spawn(move || compress(part)))
                .collect();
            let mut parts = vec![compress(first)];
            // A panic goes on to the caller's (blocking) task, which reports it.
            parts.extend(
                others
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
            );
            parts
        });
        let mut all = Vec::with_capacity(records.len());
        for part in parts {
            all.extend(part?);
        }
        Ok(all)
    }

    /// A row's JSON from what it stores: a frame and the dictionary it was
    /// made with, or (a row from before compression) the plain text. Any
    /// other combination is damage.
    pub fn stored_json(
        &self,
        text: Option<String>,
        frame: Option<&[u8]>,
        dictionary: Option<DictionaryId>,
    ) -> Result<String, CodecError> {
        match (text, frame, dictionary) {
            (None, Some(frame), Some(id)) => self.decompress(id, frame),
            (Some(text), None, None) => Ok(text),
            _ => Err(CodecError::Damaged(
                "neither a frame with its dictionary nor text",
            )),
        }
    }

    /// The JSON of a row compressed with dictionary `id`.
    pub fn decompress(&self, id: DictionaryId, frame: &[u8]) -> Result<String, CodecError> {
        let decoder = self
            .decoders
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
            .ok_or(CodecError::UnknownDictionary(id))?;
        let size = match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(size)) if size <= MAX_JSON => size,
            _ => return Err(CodecError::Damaged("no valid content size")),
        };
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        DECOMPRESSOR.with(|slot| {
            let mut slot = slot.borrow_mut();
            let dctx = match slot.as_mut() {
                Some(dctx) => dctx,
                None => slot.insert(DCtx::try_create().ok_or(CodecError::Damaged("no memory"))?),
            };
            dctx.decompress_using_ddict(&mut out, frame, &decoder)
                .map_err(|code| CodecError::Damaged(zstd::zstd_safe::get_error_name(code)))
        })?;
        if out.len() as u64 != size {
            return Err(CodecError::Damaged("length differs from its header"));
        }
        String::from_utf8(out).map_err(|_| CodecError::Damaged("not UTF-8"))
    }
}

/// `json` compressed with `dictionary`, as another build of nrls (one with
/// another dictionary) would store it: for tests of rows this build did not
/// write.
#[cfg(test)]
pub(crate) fn frame_made_with(dictionary: &[u8], json: &str) -> Vec<u8> {
    let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(json.len()));
    CCtx::create()
        .compress_using_cdict(
            &mut frame,
            json.as_bytes(),
            &CDict::create(dictionary, LEVEL),
        )
        .expect("a test frame compresses");
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    const POINTER: &str = r#"{"resourceType":"DocumentReference","id":"RR8-1","status":"current","subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}}}"#;

    #[test]
    fn round_trips_and_shrinks() {
        let codec = JsonCodec::new().unwrap();
        let frame = codec.compress(POINTER).unwrap();
        assert!(frame.len() < POINTER.len() / 2, "{} bytes", frame.len());
        assert_eq!(codec.decompress(CURRENT_ID, &frame).unwrap(), POINTER);
    }

    #[test]
    fn a_frame_needs_its_own_dictionary() {
        let codec = JsonCodec::new().unwrap();
        let frame = codec.compress(POINTER).unwrap();
        assert_eq!(
            codec.decompress(7, &frame),
            Err(CodecError::UnknownDictionary(7))
        );
        // Another dictionary under id 7 does not decode a frame of dictionary
        // 1: the frame names its dictionary and zstd checks it.
        codec.learn(7, POINTER.as_bytes()).unwrap();
        assert!(codec.knows(7));
        assert!(codec.decompress(7, &frame).is_err());
    }

    #[test]
    fn damaged_frames_are_errors_not_panics() {
        let codec = JsonCodec::new().unwrap();
        let frame = codec.compress(POINTER).unwrap();
        for cut in [0, 1, 4, frame.len() / 2, frame.len() - 1] {
            assert!(
                codec.decompress(CURRENT_ID, &frame[..cut]).is_err(),
                "{cut}"
            );
        }
        let mut bad_magic = frame.clone();
        bad_magic[0] ^= 0xff;
        assert!(codec.decompress(CURRENT_ID, &bad_magic).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_round_trips(json in "\\PC{0,3000}") {
            let codec = JsonCodec::new().unwrap();
            let frame = codec.compress(&json).unwrap();
            proptest::prop_assert_eq!(codec.decompress(CURRENT_ID, &frame).unwrap(), json);
        }

        #[test]
        fn any_bytes_decode_to_an_error_or_text_never_a_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            keep_magic in proptest::bool::ANY,
        ) {
            let codec = JsonCodec::new().unwrap();
            let mut frame = bytes;
            if keep_magic {
                // A real frame's start, so the damage is past the magic number.
                let good = codec.compress(POINTER).unwrap();
                frame.splice(0..0, good[..6].iter().copied());
            }
            // Without a frame's magic number nothing decodes; with it, damage
            // past the header must come back as an error or text, not a panic.
            let decoded = codec.decompress(CURRENT_ID, &frame);
            proptest::prop_assert!(keep_magic || decoded.is_err());
        }
    }
}
