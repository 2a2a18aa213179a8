//! ghostpii-proto: the answer-key protocol, one set of types for every side of it.
//!
//! The keyhost reads descriptors and writes answers and refusals with these types; the Rust
//! resolver and the Polars kernels write descriptors and read answers with the same ones; the
//! Python layer builds descriptors only through `ghostpii._protocol`, whose constructors are
//! these types' JSON forms. Modelled on kanidm's `proto` crate: plain serde types, no I/O.
//!
//! - [`Reason`]: every refusal reason code of the HTTP API, and the error class a client raises
//!   for it ([`ErrorClass`]).
//! - [`descriptor`]: the computation descriptors of `POST /v1/answer-keys`, generic over how a
//!   rid set travels (a base64 string or a blob marker of a request frame).
//! - [`circuit`]: row-wise circuits over encrypted cells (`POST /v1/compute`), backend-neutral.

pub mod circuit;
pub mod descriptor;
pub mod reason;

pub use descriptor::{Descriptor, Facet};
pub use reason::{ErrorClass, Reason};
