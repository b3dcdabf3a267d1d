//! A parsed GGUF file: the header parser over a byte slice (`GgufFile::parse`), and `GgufFile`,
//! which owns the memory map and hands out zero-copy views of tensor data. Loading reads only the
//! header pages; tensor data is never touched here, so opening a model costs its metadata only.

use super::cursor::Cursor;
use super::error::{GgufError, GgufErrorKind};
use super::metadata::Metadata;
use super::tensor::{read_entry, TensorInfo, MIN_ENTRY};
use super::value::{read_name, read_value, truncated, Value, ValueType};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// ggml's `GGUF_DEFAULT_ALIGNMENT`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The fewest bytes one metadata entry takes: key length, a one-byte key, type id, a u8 value.
const MIN_KV: u64 = 8 + 1 + 4 + 1;

/// Everything in a GGUF file but the tensor data: what `GgufFile::parse` returns.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

impl GgufHeader {
    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts (aligned when the file has tensors, as in ggml).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }
}

enum Storage {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// An open GGUF file. Tensor data stays in the memory map; `tensor_data` returns views into it.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    header: GgufHeader,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.header.version)
            .field("metadata", &self.header.metadata.len())
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Map and parse a file. Errors name the file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io = |e| GgufError::new(GgufErrorKind::Io(e)).in_file(path);
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(GgufError::new(GgufErrorKind::IsDirectory).in_file(path));
        }
        let len = meta.len();
        let storage = if len == 0 {
            // Mapping zero bytes fails on some systems; an empty file is simply too short.
            Storage::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only and lives as long as `GgufFile`. Another process
            // truncating or rewriting the file while it is mapped would change what we read (or
            // raise SIGBUS); like every mmap-based model loader we accept that model files are not
            // modified while in use.
            Storage::Map(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
        };
        Self::from_storage(path.to_path_buf(), storage)
    }

    /// An in-memory file, for tests. `path()` is `<memory>`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::from_storage(PathBuf::from("<memory>"), Storage::Owned(bytes))
    }

    fn from_storage(path: PathBuf, storage: Storage) -> Result<GgufFile, GgufError> {
        let bytes = match &storage {
            Storage::Map(m) => &m[..],
            Storage::Owned(v) => &v[..],
        };
        let mut header = Self::parse(bytes).map_err(|e| e.in_file(&path))?;
        header.metadata.set_file(&path);
        Ok(GgufFile {
            path,
            storage,
            header,
        })
    }

    /// Parse the header of a GGUF file held in `bytes` (the whole file: tensor placement is
    /// checked against its length). The same parser `open` uses.
    pub fn parse(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
        parse_header(bytes).map_err(GgufError::new)
    }

    fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Map(m) => m,
            Storage::Owned(v) => v,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    pub fn version(&self) -> u32 {
        self.header.version
    }

    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    pub fn data_offset(&self) -> u64 {
        self.header.data_offset
    }

    pub fn file_len(&self) -> u64 {
        self.bytes().len() as u64
    }

    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// Tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensor(name)
    }

    /// The bytes of a tensor of this file: a view into the map, exactly `t.n_bytes` long, starting
    /// at an offset that is a multiple of `alignment()` from the file start (page-aligned when
    /// the file is mapped; `from_bytes` gives only the allocator's alignment).
    ///
    /// Panics if `t` is not a tensor of this file (parsing checked that every tensor of the file
    /// lies within it, so this is a caller bug, never bad input).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = usize::try_from(t.offset)
            .ok()
            .zip(usize::try_from(t.n_bytes).ok())
            .and_then(|(start, n)| Some(start..start.checked_add(n)?));
        range.and_then(|r| self.bytes().get(r)).unwrap_or_else(|| {
            panic!(
                "tensor_data: tensor '{}' is not in {}",
                t.name,
                self.path.display()
            )
        })
    }
}

fn parse_header(bytes: &[u8]) -> Result<GgufHeader, GgufErrorKind> {
    let mut cur = Cursor::new(bytes);
    let magic = cur
        .take(4)
        .map_err(|s| truncated(s, || "magic".to_string()))?;
    if magic != b"GGUF" {
        let mut found = [0u8; 4];
        found.copy_from_slice(magic);
        return Err(GgufErrorKind::BadMagic { found });
    }
    let version = cur
        .u32()
        .map_err(|s| truncated(s, || "version".to_string()))?;
    if version != 0 && version & 0xffff == 0 {
        return Err(GgufErrorKind::BigEndian { version });
    }
    if !(2..=3).contains(&version) {
        return Err(GgufErrorKind::UnsupportedVersion { version });
    }
    let n_tensors = cur
        .u64()
        .map_err(|s| truncated(s, || "tensor count".to_string()))?;
    let n_kv = cur
        .u64()
        .map_err(|s| truncated(s, || "metadata count".to_string()))?;

    // Bound both counts by what the rest of the file could hold before reserving anything.
    let (at, have) = (cur.pos(), cur.remaining());
    let too_many = |what, count, min_size| GgufErrorKind::CountTooLarge {
        what,
        count,
        at,
        have,
        min_size,
    };
    let kv_min = n_kv
        .checked_mul(MIN_KV)
        .filter(|&b| b <= have)
        .ok_or_else(|| too_many("metadata", n_kv, MIN_KV))?;
    n_tensors
        .checked_mul(MIN_ENTRY)
        .filter(|&b| b <= have - kv_min)
        .ok_or_else(|| too_many("tensor", n_tensors, MIN_ENTRY))?;

    let mut metadata = Metadata::default();
    metadata.reserve(n_kv.min(4096) as usize);
    for index in 0..n_kv {
        let at = cur.pos();
        let key = read_name(&mut cur, &|| format!("key of metadata entry #{index}"))?;
        if key.is_empty() {
            return Err(GgufErrorKind::EmptyKey { index, at });
        }
        if metadata.get(&key).is_some() {
            return Err(GgufErrorKind::DuplicateKey { key, at });
        }
        let at = cur.pos();
        let id = cur
            .u32()
            .map_err(|s| truncated(s, || format!("type of metadata key '{key}'")))?;
        let Some(ty) = ValueType::from_id(id) else {
            return Err(GgufErrorKind::UnknownValueType { key, id, at });
        };
        let value = read_value(&mut cur, ty, &key)?;
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(v) => {
            return Err(GgufErrorKind::BadAlignment {
                found: format!("{v} ({})", v.type_name()),
            })
        }
    };

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors.min(4096) as usize);
    let mut by_name = HashMap::with_capacity(tensors.capacity());
    for index in 0..n_tensors {
        let at = cur.pos();
        let t = read_entry(&mut cur, index, alignment)?;
        if by_name.contains_key(&t.name) {
            return Err(GgufErrorKind::DuplicateTensor { name: t.name, at });
        }
        by_name.insert(t.name.clone(), tensors.len());
        tensors.push(t);
    }

    let file_len = bytes.len() as u64;
    let end_of_table = cur.pos();
    // ggml pads to the alignment only when there are tensors; keep its data offset.
    let data_offset = if n_tensors > 0 {
        end_of_table.div_ceil(alignment) * alignment
    } else {
        end_of_table
    };
    for t in &mut tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_len => t.offset = start,
            _ => {
                return Err(GgufErrorKind::TensorPastEnd {
                    name: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
    }
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for w in order.windows(2) {
        let (a, b) = (w[0], w[1]);
        // Both ends were checked against the file length above, so this cannot overflow.
        if b.offset < a.offset + a.n_bytes {
            return Err(GgufErrorKind::TensorOverlap {
                first: a.name.clone(),
                first_start: a.offset,
                first_end: a.offset + a.n_bytes,
                second: b.name.clone(),
                second_start: b.offset,
            });
        }
    }

    Ok(GgufHeader {
        version,
        alignment,
        data_offset,
        metadata,
        tensors,
        by_name,
    })
}
