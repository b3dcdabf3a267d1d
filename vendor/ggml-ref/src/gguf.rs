//! ggml's own GGUF reader (`gguf_init_from_file` / `gguf_init_from_buffer`, metadata only) as the
//! oracle for infer's reader and writer: what ggml reads back for every key and tensor.
//!
//! Values are copied out into plain Rust data before the context is freed.

use std::ffi::{c_void, CStr, CString};
use std::path::Path;

use crate::sys;

/// One metadata value as ggml read it. Strings are the bytes up to ggml's NUL terminator, decoded
/// lossily.
#[derive(Clone, Debug)]
pub enum RefValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(Vec<RefValue>),
}

#[derive(Clone, Debug)]
pub struct RefKv {
    pub key: String,
    /// ggml's `gguf_type` id (9 for arrays).
    pub type_id: u32,
    /// The element type id for arrays.
    pub arr_type_id: Option<u32>,
    pub value: RefValue,
}

#[derive(Clone, Debug)]
pub struct RefTensor {
    pub name: String,
    pub type_id: u32,
    /// ggml's `ne`: four dimensions, 1 past the tensor's rank.
    pub ne: [i64; 4],
    /// Relative to the data section.
    pub offset: u64,
    pub size: u64,
}

#[derive(Clone, Debug)]
pub struct RefGguf {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub kvs: Vec<RefKv>,
    pub tensors: Vec<RefTensor>,
}

/// Frees the context on every exit path.
struct Ctx(*mut sys::gguf_context);

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: the pointer came from gguf_init_* (non-null, checked) and is freed once, here.
        unsafe { sys::gguf_free(self.0) }
    }
}

fn params() -> sys::gguf_init_params {
    sys::gguf_init_params {
        no_alloc: true,
        ctx: std::ptr::null_mut(),
    }
}

impl RefGguf {
    /// ggml's reading of a file, or `None` when ggml refuses it.
    pub fn from_file(path: &Path) -> Option<RefGguf> {
        let c = CString::new(path.to_str()?).ok()?;
        // SAFETY: `c` is a valid NUL-terminated path; with ctx null ggml allocates nothing for
        // tensor data and only reads the header.
        let ctx = unsafe { sys::gguf_init_from_file(c.as_ptr(), params()) };
        Self::read(ctx)
    }

    /// ggml's reading of an in-memory file, or `None` when ggml refuses it.
    pub fn from_bytes(bytes: &[u8]) -> Option<RefGguf> {
        // SAFETY: the pointer and length describe `bytes`, which outlives the call; ggml copies
        // what it keeps.
        let ctx = unsafe {
            sys::gguf_init_from_buffer(bytes.as_ptr() as *const c_void, bytes.len(), params())
        };
        Self::read(ctx)
    }

    fn read(ctx: *mut sys::gguf_context) -> Option<RefGguf> {
        if ctx.is_null() {
            return None;
        }
        let ctx = Ctx(ctx);
        let c = ctx.0 as *const sys::gguf_context;
        // SAFETY (whole block): `c` is a live context; every key and tensor id passed below is in
        // 0..n as ggml reported, and each getter is called only for the type ggml reported, which
        // is what its assertions require. Returned C strings live as long as the context and are
        // copied before it is freed.
        unsafe {
            let n_kv = sys::gguf_get_n_kv(c);
            let mut kvs = Vec::with_capacity(n_kv.max(0) as usize);
            for i in 0..n_kv {
                let key = cstr(sys::gguf_get_key(c, i));
                let type_id = sys::gguf_get_kv_type(c, i);
                let (arr_type_id, value) = if type_id == sys::GGUF_TYPE_ARRAY {
                    let at = sys::gguf_get_arr_type(c, i);
                    let n = sys::gguf_get_arr_n(c, i);
                    let items = if at == sys::GGUF_TYPE_STRING {
                        (0..n)
                            .map(|j| RefValue::Str(cstr(sys::gguf_get_arr_str(c, i, j))))
                            .collect()
                    } else {
                        let data = sys::gguf_get_arr_data(c, i) as *const u8;
                        let w = scalar_width(at)?;
                        (0..n)
                            .map(|j| scalar_at(at, data.add(j * w)))
                            .collect::<Option<Vec<_>>>()?
                    };
                    (Some(at), RefValue::Array(items))
                } else if type_id == sys::GGUF_TYPE_STRING {
                    (None, RefValue::Str(cstr(sys::gguf_get_val_str(c, i))))
                } else {
                    let data = sys::gguf_get_val_data(c, i) as *const u8;
                    (None, scalar_at(type_id, data)?)
                };
                kvs.push(RefKv {
                    key,
                    type_id,
                    arr_type_id,
                    value,
                });
            }
            let n_t = sys::gguf_get_n_tensors(c);
            let mut tensors = Vec::with_capacity(n_t.max(0) as usize);
            for i in 0..n_t {
                let ne_ptr = sys::gguf_get_tensor_ne(c, i);
                let mut ne = [0i64; 4];
                ne.copy_from_slice(std::slice::from_raw_parts(ne_ptr, 4));
                tensors.push(RefTensor {
                    name: cstr(sys::gguf_get_tensor_name(c, i)),
                    type_id: sys::gguf_get_tensor_type(c, i),
                    ne,
                    offset: sys::gguf_get_tensor_offset(c, i) as u64,
                    size: sys::gguf_get_tensor_size(c, i) as u64,
                });
            }
            Some(RefGguf {
                version: sys::gguf_get_version(c),
                alignment: sys::gguf_get_alignment(c) as u64,
                data_offset: sys::gguf_get_data_offset(c) as u64,
                kvs,
                tensors,
            })
        }
    }
}

/// # Safety
/// `p` must be a valid NUL-terminated C string.
unsafe fn cstr(p: *const std::os::raw::c_char) -> String {
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Bytes per scalar of GGUF type `ty` (facts from gguf.cpp's GGUF_TYPE_SIZE; the function itself
/// is not in the public header).
fn scalar_width(ty: sys::gguf_type) -> Option<usize> {
    Some(match ty {
        sys::GGUF_TYPE_UINT8 | sys::GGUF_TYPE_INT8 | sys::GGUF_TYPE_BOOL => 1,
        sys::GGUF_TYPE_UINT16 | sys::GGUF_TYPE_INT16 => 2,
        sys::GGUF_TYPE_UINT32 | sys::GGUF_TYPE_INT32 | sys::GGUF_TYPE_FLOAT32 => 4,
        sys::GGUF_TYPE_UINT64 | sys::GGUF_TYPE_INT64 | sys::GGUF_TYPE_FLOAT64 => 8,
        _ => return None,
    })
}

/// One scalar of GGUF type `ty` stored at `p` (ggml keeps values in host order, unaligned).
///
/// # Safety
/// `p` must point to at least `gguf_type_size(ty)` readable bytes.
unsafe fn scalar_at(ty: sys::gguf_type, p: *const u8) -> Option<RefValue> {
    macro_rules! rd {
        ($t:ty) => {
            // SAFETY: guaranteed by the caller; read_unaligned because ggml's byte vectors carry
            // no alignment promise.
            unsafe { std::ptr::read_unaligned(p as *const $t) }
        };
    }
    Some(match ty {
        sys::GGUF_TYPE_UINT8 => RefValue::U8(rd!(u8)),
        sys::GGUF_TYPE_INT8 => RefValue::I8(rd!(i8)),
        sys::GGUF_TYPE_UINT16 => RefValue::U16(rd!(u16)),
        sys::GGUF_TYPE_INT16 => RefValue::I16(rd!(i16)),
        sys::GGUF_TYPE_UINT32 => RefValue::U32(rd!(u32)),
        sys::GGUF_TYPE_INT32 => RefValue::I32(rd!(i32)),
        sys::GGUF_TYPE_FLOAT32 => RefValue::F32(rd!(f32)),
        sys::GGUF_TYPE_BOOL => RefValue::Bool(rd!(u8) != 0),
        sys::GGUF_TYPE_UINT64 => RefValue::U64(rd!(u64)),
        sys::GGUF_TYPE_INT64 => RefValue::I64(rd!(i64)),
        sys::GGUF_TYPE_FLOAT64 => RefValue::F64(rd!(f64)),
        _ => return None,
    })
}

/// Silence ggml's log output (a test that feeds ggml thousands of broken files would otherwise
/// print an error line for each). Affects the whole process.
pub fn quiet_logs() {
    unsafe extern "C" fn drop_log(
        _level: sys::ggml_log_level,
        _text: *const std::os::raw::c_char,
        _user: *mut c_void,
    ) {
    }
    // SAFETY: the callback has ggml_log_callback's signature, ignores its arguments and lives for
    // the whole program.
    unsafe { sys::ggml_log_set(Some(drop_log), std::ptr::null_mut()) }
}
