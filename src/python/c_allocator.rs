//! The C libraries linked into the extension (librdkafka, OpenSSL, zlib, zstd) allocate with
//! mimalloc too, through the linker's `--wrap` of `malloc`, `calloc`, `realloc` and `free`
//! (set in `build.rs` for the extension only).
//!
//! Why: librdkafka's broker thread allocates one operation per message it fetches, and the
//! thread that takes the message frees it. Under glibc's malloc both take the broker
//! thread's arena lock, per message, and collide: in a run of 1M messages the broker thread
//! slept on that lock 4,400 times and the fetch thread 3,700 times (each a futex sleep and
//! wake), and the two cores were idle 16% of the run. mimalloc frees a block of another
//! thread without a lock.
//!
//! What stays glibc's: memory that glibc allocated itself (`strdup`, `getaddrinfo`,
//! `realpath`, ...) is freed or resized by glibc when it comes back, recognised by not being
//! in mimalloc's heap. No library linked here hands memory it allocated to glibc to free or
//! resize (no `getline` or `getdelim` on its own buffers, no `setvbuf`).

#![allow(unsafe_code)]

use std::ffi::c_void;

use libmimalloc_sys as mi;

extern "C" {
    fn __real_free(pointer: *mut c_void);
    fn __real_realloc(pointer: *mut c_void, size: usize) -> *mut c_void;
}

/// `malloc` of the linked C code.
///
/// # Safety
/// As `malloc`.
#[no_mangle]
pub unsafe extern "C" fn __wrap_malloc(size: usize) -> *mut c_void {
    // SAFETY: mimalloc's malloc, with malloc's contract.
    unsafe { mi::mi_malloc(size) }
}

/// `calloc` of the linked C code.
///
/// # Safety
/// As `calloc`.
#[no_mangle]
pub unsafe extern "C" fn __wrap_calloc(count: usize, size: usize) -> *mut c_void {
    // SAFETY: mimalloc's calloc, with calloc's contract.
    unsafe { mi::mi_calloc(count, size) }
}

/// `realloc` of the linked C code: mimalloc's for its own blocks (and null), glibc's for
/// glibc's.
///
/// # Safety
/// As `realloc`.
#[no_mangle]
pub unsafe extern "C" fn __wrap_realloc(pointer: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: `pointer` is null or a live block; whichever allocator made it resizes it.
    unsafe {
        if pointer.is_null() || mi::mi_is_in_heap_region(pointer) {
            mi::mi_realloc(pointer, size)
        } else {
            __real_realloc(pointer, size)
        }
    }
}

/// `free` of the linked C code: mimalloc's for its own blocks, glibc's for glibc's.
///
/// # Safety
/// As `free`.
#[no_mangle]
pub unsafe extern "C" fn __wrap_free(pointer: *mut c_void) {
    if pointer.is_null() {
        return;
    }
    // SAFETY: `pointer` is a live block; whichever allocator made it frees it.
    unsafe {
        if mi::mi_is_in_heap_region(pointer) {
            mi::mi_free(pointer)
        } else {
            __real_free(pointer)
        }
    }
}
