//! Extractors that turn an HTTP request into checked domain inputs.

mod body;
mod caller;
pub mod headers;
mod search_params;

pub use body::{FhirBody, PointerBody};
pub use caller::{Caller, Consumer, Producer};
pub use headers::{RequestIds, if_match_version};
pub use search_params::SearchParams;
