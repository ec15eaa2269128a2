//! The nrls domain: what a pointer is, what makes one valid, who may see it and
//! how a search is expressed. Pure: no async, no I/O, no HTTP, no SQL.

pub mod access;
pub mod catalogue;
pub mod clock;
pub mod convergence;
pub mod issue;
pub mod nhs_number;
pub mod ods_code;
pub mod permissions;
pub mod pointer;
pub mod pointer_id;
pub mod search;
pub mod subscription;
pub mod systems;
pub mod validation;

pub use catalogue::{Catalogue, PointerType, TypeIndex};
pub use issue::{ErrorCode, Issue, IssueType};
pub use nhs_number::NhsNumber;
pub use ods_code::OdsCode;
pub use permissions::{Permissions, Role};
pub use pointer::{PointerRecord, Supersede};
pub use pointer_id::PointerId;
