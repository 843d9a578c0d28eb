//! Advice to the kernel about how our memory is backed (`madvise`), on whole pages only: the
//! weight file's pages given back once copied, huge pages for large workspace buffers. Advice
//! never changes what the memory holds, and a refusal just leaves things as they were, so
//! errors are ignored. Linux/Unix only; elsewhere these do nothing.

use std::mem::MaybeUninit;

/// Drops this process's mapping of the whole pages inside `bytes`, a piece of a read-only
/// file map. The kernel keeps them in its page cache; were they read again they would fault
/// back in with the same contents, so the borrow of `bytes` stays valid.
pub fn release_file_pages(bytes: &[u8]) {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if let Ok(page) = usize::try_from(page) {
            // MADV_DONTNEED on a read-only file mapping only unmaps the pages from this
            // process; nothing in it is ever written.
            advise(
                bytes.as_ptr() as usize,
                bytes.len(),
                page,
                libc::MADV_DONTNEED,
            );
        }
    }
    #[cfg(not(unix))]
    let _ = bytes;
}

/// Asks for transparent huge pages behind the 2 MiB-aligned part of `memory` (an allocation
/// not yet touched): a large buffer then costs a few faults instead of one per 4 KiB page.
pub fn advise_huge_pages(memory: &mut [MaybeUninit<f32>]) {
    #[cfg(target_os = "linux")]
    advise(
        memory.as_mut_ptr() as usize,
        std::mem::size_of_val(memory),
        2 << 20,
        libc::MADV_HUGEPAGE,
    );
    #[cfg(not(target_os = "linux"))]
    let _ = memory;
}

/// `madvise(advice)` on the whole `page`-sized pages inside `[start, start + len)`.
#[cfg(unix)]
fn advise(start: usize, len: usize, page: usize, advice: libc::c_int) {
    if !page.is_power_of_two() {
        return;
    }
    let first = start.next_multiple_of(page);
    let end = (start + len) & !(page - 1);
    if end > first {
        // SAFETY: [first, end) lies inside memory the caller borrows, and the callers' advice
        // (DONTNEED on a read-only file map, HUGEPAGE on an allocation) changes how the kernel
        // backs those pages, never the values a later read sees.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, advice);
        }
    }
}
