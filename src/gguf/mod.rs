//! GGUF reader and writer. `GgufFile::open` maps a file and parses its header (metadata and tensor
//! table) with every length, count and offset checked against the file; tensor data is never
//! copied or touched at load. `writer` builds GGUF v3 files for tests.
//!
//! Modules: `cursor` (checked byte reader), `value` (metadata values), `metadata` (key index and
//! typed getters), `tensor` (table entries), `file` (header parser and the mapped file), `error`.

mod cursor;
pub mod error;
pub mod file;
pub mod metadata;
pub mod tensor;
pub mod value;
pub mod writer;

pub use error::{GgufError, GgufErrorKind};
pub use file::{GgufFile, GgufHeader, DEFAULT_ALIGNMENT};
pub use metadata::Metadata;
pub use tensor::TensorInfo;
pub use value::{Array, Value, ValueType};
pub use writer::GgufWriter;
