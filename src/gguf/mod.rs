//! GGUF reader and writer. `GgufFile::open` maps a file and parses its header (metadata and tensor
//! table) with every length, count and offset checked against the file; tensor data is never
//! copied or touched at load. `writer` builds GGUF v3 files for tests.
//!
//! What the reader accepts is ggml's `gguf_init_from_file` (checked by tests/gguf_reader.rs on the
//! real model, a file with every value type and 100,000 mutated files), with these deliberate
//! differences:
//! - stricter: a tensor with a zero dimension or rank 0, tensor data past the end of the file
//!   (ggml's metadata-only read does not look), and keys or tensor names that are not UTF-8 are
//!   errors; string *values* that are not UTF-8 are decoded lossily (U+FFFD) since ggml takes them;
//! - laxer: tensor data may be laid out in any order with gaps, as long as every tensor is aligned,
//!   inside the file and disjoint from the others (ggml demands back-to-back offsets in table order).
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
