//! Link arguments of the Python extension (see `src/python/c_allocator.rs`): the C code
//! linked into it calls mimalloc where it calls `malloc`, `calloc`, `realloc` and `free`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_PYTHON").is_some() {
        for function in ["malloc", "calloc", "realloc", "free"] {
            println!("cargo:rustc-cdylib-link-arg=-Wl,--wrap={function}");
        }
    }
}
