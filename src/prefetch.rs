//! Software prefetch: asking this core to start loading memory it is about to read.
//!
//! A change is built on the fetch thread's core and read on the application's, so each of its
//! cache lines is a miss there, and converting a change walks them one after the other, each
//! miss waited for in turn. Asking for the lines of the next changes while this one is
//! converted overlaps those waits with work.

/// Start loading the cache lines that hold `value` (its own bytes, not what it points to).
/// A hint only: it never faults and changes nothing but timing; on targets without a prefetch
/// instruction used here it does nothing.
#[inline]
pub fn prefetch<T: ?Sized>(value: &T) {
    const LINE: usize = 64;
    let start = std::ptr::from_ref(value).cast::<u8>() as usize;
    let len = std::mem::size_of_val(value);
    if len == 0 {
        return;
    }
    let mut line = start & !(LINE - 1);
    while line < start + len {
        prefetch_line(line);
        line += LINE;
    }
}

// The one unsafe here: the prefetch instructions, which read nothing and cannot fault.
#[allow(unsafe_code)]
#[inline(always)]
fn prefetch_line(address: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it does not fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address as *const i8)
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above: `prfm` does not fault and writes nothing.
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{0}]", in(reg) address, options(nostack, readonly, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = address;
}
