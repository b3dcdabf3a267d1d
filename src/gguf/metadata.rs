//! The key/value metadata of a GGUF file, in file order, with a key index and typed getters.
//! Getters return `Ok(None)` for an absent key and an error naming the key and its actual type
//! when the type is wrong, so callers can tell "optional and missing" from "present but bad".

use super::error::{GgufError, GgufErrorKind};
use super::value::{Array, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    /// The file the metadata came from, for error messages.
    file: Option<PathBuf>,
}

impl Metadata {
    /// Add an entry; returns false (and adds nothing) when the key is already present.
    pub(crate) fn insert(&mut self, key: String, value: Value) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        true
    }

    pub(crate) fn set_file(&mut self, path: &Path) {
        self.file = Some(path.to_path_buf());
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
        self.index.reserve(n);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// All entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn err(&self, kind: GgufErrorKind) -> GgufError {
        match &self.file {
            Some(p) => GgufError::new(kind).in_file(p),
            None => GgufError::new(kind),
        }
    }

    fn wrong_type(&self, key: &str, expected: &'static str, v: &Value) -> GgufError {
        self.err(GgufErrorKind::WrongType {
            key: key.to_string(),
            expected,
            actual: v.type_name(),
        })
    }

    fn integer<T: TryFrom<i128>>(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<Option<T>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let i = v
            .as_integer()
            .ok_or_else(|| self.wrong_type(key, expected, v))?;
        T::try_from(i).map(Some).map_err(|_| {
            self.err(GgufErrorKind::OutOfRange {
                key: key.to_string(),
                value: i.to_string(),
                expected,
            })
        })
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(key, "str", v)),
        }
    }

    /// Any integer type whose value fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.integer(key, "u32")
    }

    /// Any integer type whose value fits in u64.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.integer(key, "u64")
    }

    /// Any integer type whose value fits in i32.
    pub fn get_i32(&self, key: &str) -> Result<Option<i32>, GgufError> {
        self.integer(key, "i32")
    }

    /// Any integer type whose value fits in i64.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, GgufError> {
        self.integer(key, "i64")
    }

    /// An f32, or an f64 rounded to f32.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(x)) => Ok(Some(*x)),
            Some(Value::F64(x)) => Ok(Some(*x as f32)),
            Some(v) => Err(self.wrong_type(key, "f32", v)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong_type(key, "bool", v)),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&Array>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.wrong_type(key, "arr", v)),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<Option<&[String]>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::String(a))) => Ok(Some(a)),
            Some(v) => Err(self.wrong_type(key, "arr[str]", v)),
        }
    }

    pub fn get_f32_array(&self, key: &str) -> Result<Option<&[f32]>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::F32(a))) => Ok(Some(a)),
            Some(v) => Err(self.wrong_type(key, "arr[f32]", v)),
        }
    }

    pub fn get_i32_array(&self, key: &str) -> Result<Option<&[i32]>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::I32(a))) => Ok(Some(a)),
            Some(v) => Err(self.wrong_type(key, "arr[i32]", v)),
        }
    }

    /// `general.architecture`, which every model file must have.
    pub fn arch(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")?.ok_or_else(|| {
            self.err(GgufErrorKind::MissingKey {
                key: "general.architecture".to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md() -> Metadata {
        let mut m = Metadata::default();
        for (k, v) in [
            ("a.u8", Value::U8(7)),
            ("a.neg", Value::I32(-1)),
            ("a.big", Value::U64(1 << 40)),
            ("a.f64", Value::F64(0.5)),
            ("a.s", Value::from("x")),
            ("a.toks", Value::from(vec!["a", "b"])),
        ] {
            assert!(m.insert(k.to_string(), v));
        }
        m
    }

    #[test]
    fn integer_getters_accept_any_fitting_integer() {
        let m = md();
        assert_eq!(m.get_u32("a.u8").unwrap(), Some(7));
        assert_eq!(m.get_i32("a.neg").unwrap(), Some(-1));
        assert_eq!(m.get_u64("a.big").unwrap(), Some(1 << 40));
        let e = m.get_u32("a.neg").unwrap_err().to_string();
        assert!(
            e.contains("a.neg") && e.contains("-1") && e.contains("u32"),
            "{e}"
        );
        assert!(m.get_u32("a.big").is_err());
        assert_eq!(m.get_u32("absent").unwrap(), None);
    }

    #[test]
    fn wrong_type_names_key_and_actual_type() {
        let m = md();
        let e = m.get_str("a.u8").unwrap_err().to_string();
        assert!(
            e.contains("'a.u8'") && e.contains("type u8") && e.contains("expected str"),
            "{e}"
        );
        let e = m.get_f32_array("a.toks").unwrap_err().to_string();
        assert!(e.contains("arr[str]"), "{e}");
        assert_eq!(m.get_f32("a.f64").unwrap(), Some(0.5));
        assert_eq!(m.get_str_array("a.toks").unwrap().map(|a| a.len()), Some(2));
        assert!(m
            .arch()
            .unwrap_err()
            .to_string()
            .contains("general.architecture"));
    }

    #[test]
    fn duplicate_insert_is_refused() {
        let mut m = md();
        assert!(!m.insert("a.s".to_string(), Value::U8(0)));
        assert_eq!(m.iter().map(|(k, _)| k).collect::<Vec<_>>()[4], "a.s");
    }
}
