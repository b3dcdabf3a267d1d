//! The one error type of the GGUF reader. Every message is one line that names the file (when the
//! bytes came from one), the field and the offending value, so that `infer info` can print it as is.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

/// An error from reading a GGUF file or from a typed metadata getter.
#[derive(Debug)]
pub struct GgufError {
    file: Option<PathBuf>,
    kind: GgufErrorKind,
}

impl GgufError {
    pub(crate) fn new(kind: GgufErrorKind) -> Self {
        GgufError { file: None, kind }
    }

    /// Name the file in the message (parsing over a byte slice does not know it).
    pub(crate) fn in_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub fn kind(&self) -> &GgufErrorKind {
        &self.kind
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}: {}", p.display(), self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

// No `source()`: the io error text is already part of the message, and anyhow's `{:#}` would
// otherwise print it twice.
impl std::error::Error for GgufError {}

impl From<GgufErrorKind> for GgufError {
    fn from(kind: GgufErrorKind) -> Self {
        GgufError::new(kind)
    }
}

/// Names and keys come from the file: control characters (a newline in a key) are escaped so that
/// every message stays on one line.
fn esc(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// What went wrong. Offsets (`at`) are byte positions in the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufErrorKind {
    #[error("cannot read file: {0}")]
    Io(std::io::Error),
    #[error("is a directory, not a GGUF file")]
    IsDirectory,
    #[error("not a GGUF file: magic bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error("GGUF version {version} (0x{version:08x}) looks byte-swapped: only little-endian files are supported")]
    BigEndian { version: u32 },
    #[error("GGUF version {version} is not supported (only versions 2 and 3 are)")]
    UnsupportedVersion { version: u32 },
    #[error("file truncated in {}: need {need} bytes at byte {at}, only {have} left", esc(.what))]
    Truncated {
        what: String,
        at: u64,
        need: u64,
        have: u64,
    },
    #[error("{} count {count} is more than the file can hold ({have} bytes left at byte {at}, each entry takes at least {min_size})", esc(.what))]
    CountTooLarge {
        what: &'static str,
        count: u64,
        at: u64,
        have: u64,
        min_size: u64,
    },
    #[error("{}: length {len} at byte {at} runs past the end of the file ({have} bytes left)", esc(.what))]
    LengthPastEnd {
        what: String,
        len: u64,
        at: u64,
        have: u64,
    },
    #[error("{} at byte {at} is not valid UTF-8", esc(.what))]
    BadUtf8 { what: String, at: u64 },
    #[error("metadata key #{index} at byte {at} is empty")]
    EmptyKey { index: u64, at: u64 },
    #[error("duplicate metadata key '{}' at byte {at}", esc(.key))]
    DuplicateKey { key: String, at: u64 },
    #[error("metadata key '{}' has unknown value type {id} at byte {at}", esc(.key))]
    UnknownValueType { key: String, id: u32, at: u64 },
    #[error("metadata key '{}' is an array of arrays (nested arrays are not supported) at byte {at}", esc(.key))]
    NestedArray { key: String, at: u64 },
    #[error("general.alignment must be a non-zero power of two stored as u32, found {found}")]
    BadAlignment { found: String },
    #[error("tensor #{index} at byte {at}: name is {len} bytes, ggml allows at most 63")]
    TensorNameTooLong { index: u64, len: u64, at: u64 },
    #[error("duplicate tensor name '{}' at byte {at}", esc(.name))]
    DuplicateTensor { name: String, at: u64 },
    #[error("tensor '{}' has {n_dims} dimensions, must be 1 to 4", esc(.name))]
    BadDimCount { name: String, n_dims: u32 },
    #[error("tensor '{}' has a zero-length dimension: shape {dims:?}", esc(.name))]
    ZeroDim { name: String, dims: Vec<u64> },
    #[error("tensor '{}' shape {dims:?} overflows: {what}", esc(.name))]
    ShapeOverflow {
        name: String,
        dims: Vec<u64>,
        what: &'static str,
    },
    #[error("tensor '{}' has unknown ggml type id {id}", esc(.name))]
    UnknownTensorType { name: String, id: u32 },
    #[error("tensor '{}' of type {ty}: row length {row} is not a multiple of the block size {block}", esc(.name))]
    RaggedRow {
        name: String,
        ty: crate::quant::GgmlType,
        row: u64,
        block: u64,
    },
    #[error("tensor '{}' data offset {offset} is not a multiple of the alignment {alignment}", esc(.name))]
    MisalignedTensor {
        name: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor '{}' data (bytes {start}..{end}) runs past the end of the file ({file_len} bytes)", esc(.name))]
    TensorPastEnd {
        name: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error("tensor '{}' data (from byte {second_start}) overlaps tensor '{}' (bytes {first_start}..{first_end})", esc(.second), esc(.first))]
    TensorOverlap {
        first: String,
        first_start: u64,
        first_end: u64,
        second: String,
        second_start: u64,
    },
    #[error("metadata key '{}' is missing", esc(.key))]
    MissingKey { key: String },
    #[error("metadata key '{}' has type {actual}, expected {expected}", esc(.key))]
    WrongType {
        key: String,
        expected: &'static str,
        actual: String,
    },
    #[error("metadata key '{}' value {value} does not fit in {expected}", esc(.key))]
    OutOfRange {
        key: String,
        value: String,
        expected: &'static str,
    },
}
