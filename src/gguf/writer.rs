//! A small GGUF v3 writer for tests: metadata of every value type, tensors of any ggml type given
//! as raw bytes, data padded to the alignment as ggml lays it out (tensors in order, each padded).
//! It writes what it is told without validating it, so tests can also build hostile files:
//! a tensor whose bytes do not match its shape, a bad `general.alignment`, a version of 1.
//!
//! ```
//! use infer::gguf::{GgufWriter, GgufFile};
//! use infer::quant::GgmlType;
//! let bytes = GgufWriter::new()
//!     .meta("general.architecture", "llama")
//!     .meta("llama.block_count", 2u32)
//!     .tensor_f32("output_norm.weight", &[4], &[1.0, 2.0, 3.0, 4.0])
//!     .to_bytes();
//! let file = GgufFile::from_bytes(bytes).unwrap();
//! assert_eq!(file.tensors()[0].ty, GgmlType::F32);
//! ```

use super::file::DEFAULT_ALIGNMENT;
use super::value::{Array, Value};
use crate::quant::GgmlType;
use std::path::Path;

struct PendingTensor {
    name: String,
    ty_id: u32,
    dims: Vec<u64>,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory. See the module documentation.
pub struct GgufWriter {
    version: u32,
    kvs: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty version-3 file.
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// The version number written in the header (the layout stays that of v2/v3).
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Add a metadata entry (duplicates are written as given).
    pub fn meta(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.kvs.push((key.to_string(), value.into()));
        self
    }

    /// Set `general.alignment` (as u32, as ggml requires) and pad tensor data to it.
    pub fn alignment(self, alignment: u32) -> Self {
        self.meta("general.alignment", Value::U32(alignment))
    }

    /// Add a tensor: `dims` in ggml order (row length first), `data` its raw bytes.
    pub fn tensor(self, name: &str, ty: GgmlType, dims: &[u64], data: impl Into<Vec<u8>>) -> Self {
        self.tensor_with_type_id(name, ty.id(), dims, data)
    }

    /// Add a tensor with any type id, including ones ggml does not define.
    pub fn tensor_with_type_id(
        mut self,
        name: &str,
        ty_id: u32,
        dims: &[u64],
        data: impl Into<Vec<u8>>,
    ) -> Self {
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            ty_id,
            dims: dims.to_vec(),
            data: data.into(),
        });
        self
    }

    /// Add an F32 tensor from values.
    pub fn tensor_f32(self, name: &str, dims: &[u64], values: &[f32]) -> Self {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, GgmlType::F32, dims, data)
    }

    /// The alignment data is padded to: the last valid `general.alignment` u32, else the default.
    fn pad_alignment(&self) -> u64 {
        self.kvs
            .iter()
            .rev()
            .find_map(|(k, v)| match v {
                Value::U32(a) if k == "general.alignment" && a.is_power_of_two() => {
                    Some(u64::from(*a))
                }
                _ => None,
            })
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Byte offset of each tensor's data relative to the data section, as `to_bytes` lays it out.
    pub fn relative_offsets(&self) -> Vec<u64> {
        let align = self.pad_alignment();
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut at = 0u64;
        for t in &self.tensors {
            offsets.push(at);
            at = (at + t.data.len() as u64).div_ceil(align) * align;
        }
        offsets
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            out.extend_from_slice(&v.ty().id().to_le_bytes());
            put_value(&mut out, v);
        }
        let offsets = self.relative_offsets();
        for (t, off) in self.tensors.iter().zip(&offsets) {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty_id.to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
        }
        if !self.tensors.is_empty() {
            let align = self.pad_alignment() as usize;
            let data_start = out.len().div_ceil(align) * align;
            for (t, off) in self.tensors.iter().zip(&offsets) {
                out.resize(data_start + *off as usize, 0);
                out.extend_from_slice(&t.data);
            }
            out.resize(
                (out.len() - data_start).div_ceil(align) * align + data_start,
                0,
            );
        }
        out
    }

    pub fn write_to(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array(a) => {
            out.extend_from_slice(&a.elem_type().id().to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            macro_rules! each {
                ($v:expr) => {
                    for x in $v {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                };
            }
            match a {
                Array::U8(v) => each!(v),
                Array::I8(v) => each!(v),
                Array::U16(v) => each!(v),
                Array::I16(v) => each!(v),
                Array::U32(v) => each!(v),
                Array::I32(v) => each!(v),
                Array::F32(v) => each!(v),
                Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
                Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
                Array::U64(v) => each!(v),
                Array::I64(v) => each!(v),
                Array::F64(v) => each!(v),
            }
        }
    }
}
