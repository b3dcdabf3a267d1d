//! The llama.cpp/ggml reference for tests and benchmarks. Never a dependency of the shipped binary.
//! `sys` is the raw bindgen output of llama-cpp-sys-2; the modules below wrap what our tests need.

pub use llama_cpp_sys_2 as sys;
pub mod chat;
pub mod eval;
pub mod generate;
pub mod gguf;
pub mod kquant;
pub mod llama;
pub mod quant;
