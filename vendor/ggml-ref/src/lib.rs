//! The llama.cpp/ggml reference for tests and benchmarks. Never a dependency of the shipped binary.
pub use llama_cpp_sys_2 as sys;
