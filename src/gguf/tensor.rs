//! Tensor table entries: name, shape, type and where the data lies. Shapes are checked here (rank,
//! zero and overflowing dimensions, whole blocks per row); placement in the file is checked by the
//! caller once the data section start is known.

use super::cursor::Cursor;
use super::error::GgufErrorKind;
use super::value::{read_name, truncated};
use crate::quant::GgmlType;

/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;
/// ggml's `GGML_MAX_NAME` (a name must fit with its NUL terminator).
pub const MAX_NAME: u64 = 64;
/// The fewest bytes one tensor table entry takes: name length, rank, one dimension, type, offset.
pub(crate) const MIN_ENTRY: u64 = 8 + 4 + 8 + 4 + 8;

/// One tensor of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length (the fastest-varying dimension).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Elements per row (`dims[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows: the product of all dimensions but the first.
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

/// Read one table entry. `offset` in the result is still relative to the data section.
pub(crate) fn read_entry(
    cur: &mut Cursor<'_>,
    index: u64,
    alignment: u64,
) -> Result<TensorInfo, GgufErrorKind> {
    let at = cur.pos();
    let name = read_name(cur, &|| format!("name of tensor #{index}"))?;
    if name.len() as u64 >= MAX_NAME {
        return Err(GgufErrorKind::TensorNameTooLong {
            index,
            len: name.len() as u64,
            at,
        });
    }
    let what = |field: &str| format!("{field} of tensor '{name}'");
    let n_dims = cur.u32().map_err(|s| truncated(s, || what("rank")))?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufErrorKind::BadDimCount { name, n_dims });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(cur.u64().map_err(|s| truncated(s, || what("shape")))?);
    }
    let type_id = cur.u32().map_err(|s| truncated(s, || what("type")))?;
    let rel_offset = cur
        .u64()
        .map_err(|s| truncated(s, || what("data offset")))?;

    if dims.contains(&0) {
        return Err(GgufErrorKind::ZeroDim { name, dims });
    }
    // ggml stores dimensions as int64_t; its element count must stay representable too.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64);
    let Some(n_elements) = n_elements else {
        return Err(GgufErrorKind::ShapeOverflow {
            name,
            dims,
            what: "element count exceeds 2^63-1",
        });
    };
    let Some(ty) = GgmlType::from_id(type_id) else {
        return Err(GgufErrorKind::UnknownTensorType { name, id: type_id });
    };
    let block = ty.block_size() as u64;
    if dims[0] % block != 0 {
        return Err(GgufErrorKind::RaggedRow {
            name,
            ty,
            row: dims[0],
            block,
        });
    }
    // As ggml: the byte size must fit in size_t (a huge one then fails the end-of-file check).
    let Some(n_bytes) = ty.row_bytes(n_elements) else {
        return Err(GgufErrorKind::ShapeOverflow {
            name,
            dims,
            what: "byte size exceeds 2^64-1",
        });
    };
    if rel_offset % alignment != 0 {
        return Err(GgufErrorKind::MisalignedTensor {
            name,
            offset: rel_offset,
            alignment,
        });
    }
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset: rel_offset,
        n_elements,
        n_bytes,
    })
}
