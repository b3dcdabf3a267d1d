//! Metadata values: the thirteen GGUF value types, typed array storage (a 262,144-entry vocabulary
//! is one `Vec<String>`, a score table one `Vec<f32>`), and their decoding from the header bytes.
//!
//! String values that are not valid UTF-8 are decoded lossily (U+FFFD), as llama.cpp does not
//! check them and real vocabularies may hold such tokens; keys and tensor names must be valid UTF-8.

use super::cursor::{Cursor, Short};
use super::error::GgufErrorKind;
use std::borrow::Cow;
use std::fmt;

/// A GGUF value type id, as stored in the file (ggml's `gguf_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

/// (type, id, ggml's short name, fixed size in bytes; 8 for a string's length prefix, 12 for an
/// array's element type and count)
const TYPES: [(ValueType, u32, &str, u64); 13] = [
    (ValueType::U8, 0, "u8", 1),
    (ValueType::I8, 1, "i8", 1),
    (ValueType::U16, 2, "u16", 2),
    (ValueType::I16, 3, "i16", 2),
    (ValueType::U32, 4, "u32", 4),
    (ValueType::I32, 5, "i32", 4),
    (ValueType::F32, 6, "f32", 4),
    (ValueType::Bool, 7, "bool", 1),
    (ValueType::String, 8, "str", 8),
    (ValueType::Array, 9, "arr", 12),
    (ValueType::U64, 10, "u64", 8),
    (ValueType::I64, 11, "i64", 8),
    (ValueType::F64, 12, "f64", 8),
];

impl ValueType {
    pub fn from_id(id: u32) -> Option<ValueType> {
        TYPES.iter().find(|t| t.1 == id).map(|t| t.0)
    }

    fn row(self) -> &'static (ValueType, u32, &'static str, u64) {
        // TYPES is indexed by id order and ids are 0..13 in declaration order.
        &TYPES[self as usize]
    }

    pub fn id(self) -> u32 {
        self.row().1
    }

    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// The fewest bytes one value of this type takes in the file.
    pub(crate) fn min_size(self) -> u64 {
        self.row().3
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array, stored by element type. GGUF does not allow arrays of arrays.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Value {
    pub fn ty(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// ggml's name for the type, with the element type for arrays: `u32`, `arr[str]`.
    pub fn type_name(&self) -> String {
        match self {
            Value::Array(a) => format!("arr[{}]", a.elem_type().name()),
            v => v.ty().name().to_string(),
        }
    }

    /// The value as a signed 128-bit integer, for integer types only (so every GGUF integer fits).
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }
}

impl Array {
    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Short, one-line rendering for `infer info`: arrays show their type, length and first entries.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Array(a) => {
                const SHOWN: usize = 8;
                fn list<T: fmt::Debug>(f: &mut fmt::Formatter<'_>, v: &[T]) -> fmt::Result {
                    let head: Vec<String> =
                        v.iter().take(SHOWN).map(|x| format!("{x:?}")).collect();
                    let more = if v.len() > SHOWN { ", ..." } else { "" };
                    write!(f, "[{}{more}]", head.join(", "))
                }
                match a {
                    Array::U8(v) => list(f, v),
                    Array::I8(v) => list(f, v),
                    Array::U16(v) => list(f, v),
                    Array::I16(v) => list(f, v),
                    Array::U32(v) => list(f, v),
                    Array::I32(v) => list(f, v),
                    Array::F32(v) => list(f, v),
                    Array::Bool(v) => list(f, v),
                    Array::String(v) => list(f, v),
                    Array::U64(v) => list(f, v),
                    Array::I64(v) => list(f, v),
                    Array::F64(v) => list(f, v),
                }
            }
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value { Value::$v(x) }
        }
        impl From<Vec<$t>> for Value {
            fn from(x: Vec<$t>) -> Value { Value::Array(Array::$v(x)) }
        }
    )*};
}
value_from!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64);

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<Vec<&str>> for Value {
    fn from(v: Vec<&str>) -> Value {
        Value::Array(Array::String(v.into_iter().map(str::to_string).collect()))
    }
}

impl From<Array> for Value {
    fn from(a: Array) -> Value {
        Value::Array(a)
    }
}

pub(crate) fn truncated(s: Short, what: impl FnOnce() -> String) -> GgufErrorKind {
    GgufErrorKind::Truncated {
        what: what(),
        at: s.at,
        need: s.need,
        have: s.have,
    }
}

/// A length-prefixed string's bytes, not yet decoded.
pub(crate) fn read_str_bytes<'a>(
    cur: &mut Cursor<'a>,
    what: &dyn Fn() -> String,
) -> Result<&'a [u8], GgufErrorKind> {
    let len = cur
        .u64()
        .map_err(|s| truncated(s, || format!("{} length", what())))?;
    let at = cur.pos();
    cur.take(len).map_err(|s| GgufErrorKind::LengthPastEnd {
        what: what(),
        len,
        at,
        have: s.have,
    })
}

/// A length-prefixed string that must be valid UTF-8 (keys, tensor names).
pub(crate) fn read_name(
    cur: &mut Cursor<'_>,
    what: &dyn Fn() -> String,
) -> Result<String, GgufErrorKind> {
    let at = cur.pos();
    let bytes = read_str_bytes(cur, what)?;
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => Err(GgufErrorKind::BadUtf8 { what: what(), at }),
    }
}

fn read_lossy(cur: &mut Cursor<'_>, what: &dyn Fn() -> String) -> Result<String, GgufErrorKind> {
    let bytes = read_str_bytes(cur, what)?;
    Ok(match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => s.to_string(),
        Cow::Owned(s) => s,
    })
}

/// Read one value of type `ty` for metadata key `key`.
pub(crate) fn read_value(
    cur: &mut Cursor<'_>,
    ty: ValueType,
    key: &str,
) -> Result<Value, GgufErrorKind> {
    let what = || format!("value of metadata key '{key}'");
    macro_rules! scalar {
        ($v:ident, $t:ty) => {
            Value::$v(<$t>::from_le_bytes(
                cur.le().map_err(|s| truncated(s, what))?,
            ))
        };
    }
    Ok(match ty {
        ValueType::U8 => scalar!(U8, u8),
        ValueType::I8 => scalar!(I8, i8),
        ValueType::U16 => scalar!(U16, u16),
        ValueType::I16 => scalar!(I16, i16),
        ValueType::U32 => scalar!(U32, u32),
        ValueType::I32 => scalar!(I32, i32),
        ValueType::F32 => scalar!(F32, f32),
        ValueType::U64 => scalar!(U64, u64),
        ValueType::I64 => scalar!(I64, i64),
        ValueType::F64 => scalar!(F64, f64),
        // ggml reads a bool as one byte and takes any non-zero value as true.
        ValueType::Bool => Value::Bool(cur.u8().map_err(|s| truncated(s, what))? != 0),
        ValueType::String => Value::String(read_lossy(cur, &what)?),
        ValueType::Array => Value::Array(read_array(cur, key)?),
    })
}

fn read_array(cur: &mut Cursor<'_>, key: &str) -> Result<Array, GgufErrorKind> {
    let at = cur.pos();
    let id = cur
        .u32()
        .map_err(|s| truncated(s, || format!("array type of metadata key '{key}'")))?;
    let elem = ValueType::from_id(id).ok_or_else(|| GgufErrorKind::UnknownValueType {
        key: key.to_string(),
        id,
        at,
    })?;
    if elem == ValueType::Array {
        return Err(GgufErrorKind::NestedArray {
            key: key.to_string(),
            at,
        });
    }
    let n = cur
        .u64()
        .map_err(|s| truncated(s, || format!("array length of metadata key '{key}'")))?;
    // Bound the count by the bytes left before allocating anything for it.
    let at = cur.pos();
    let have = cur.remaining();
    let past_end = || GgufErrorKind::LengthPastEnd {
        what: format!("array of {} in metadata key '{key}'", elem.name()),
        len: n,
        at,
        have,
    };
    let min_bytes = n.checked_mul(elem.min_size()).ok_or_else(past_end)?;
    if min_bytes > have {
        return Err(past_end());
    }
    let n = usize::try_from(n).map_err(|_| past_end())?;

    macro_rules! fixed {
        ($v:ident, $t:ty) => {{
            const W: usize = std::mem::size_of::<$t>();
            let bytes = cur.take(min_bytes).map_err(|_| past_end())?;
            Array::$v(
                bytes
                    .chunks_exact(W)
                    .map(|c| {
                        let mut a = [0u8; W];
                        a.copy_from_slice(c);
                        <$t>::from_le_bytes(a)
                    })
                    .collect(),
            )
        }};
    }
    Ok(match elem {
        ValueType::U8 => fixed!(U8, u8),
        ValueType::I8 => fixed!(I8, i8),
        ValueType::U16 => fixed!(U16, u16),
        ValueType::I16 => fixed!(I16, i16),
        ValueType::U32 => fixed!(U32, u32),
        ValueType::I32 => fixed!(I32, i32),
        ValueType::F32 => fixed!(F32, f32),
        ValueType::U64 => fixed!(U64, u64),
        ValueType::I64 => fixed!(I64, i64),
        ValueType::F64 => fixed!(F64, f64),
        ValueType::Bool => {
            let bytes = cur.take(min_bytes).map_err(|_| past_end())?;
            Array::Bool(bytes.iter().map(|&b| b != 0).collect())
        }
        ValueType::String => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(read_lossy(cur, &|| {
                    format!("string {i} of array in metadata key '{key}'")
                })?);
            }
            Array::String(v)
        }
        ValueType::Array => {
            return Err(GgufErrorKind::NestedArray {
                key: key.to_string(),
                at,
            })
        }
    })
}
