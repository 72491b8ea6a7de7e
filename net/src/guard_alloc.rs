//! A global allocator that keeps a hostile request from aborting the process.
//!
//! kafka-protocol 0.18 reserves `Vec::with_capacity(n)` from an array count read off
//! the wire before it checks that the bytes are there, so a 20-byte request can ask for
//! hundreds of GiB; the system allocator refuses and Rust aborts. This allocator serves
//! every allocation of 1 GiB or more (which no valid request needs: frames are bounded
//! by socket.request.max.bytes) from a `MAP_NORESERVE` anonymous mapping: address
//! space only, committed page by page on first touch. The decoder then fails at the
//! next missing element and the untouched mapping is unmapped. Everything smaller goes
//! to the system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

pub struct GuardedAlloc;

const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY: huge blocks come from mmap (page-aligned, so any align <= PAGE holds, and
// zero-filled) and go back through munmap with the same size; all others are
// forwarded to `System` with the caller's layout.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            let p = libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                p.cast()
            }
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            self.alloc(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            libc::munmap(ptr.cast(), layout.size());
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, layout.align());
        if !is_huge(&layout) && !is_huge(&new) {
            return System.realloc(ptr, layout, new_size);
        }
        let fresh = self.alloc(new);
        if !fresh.is_null() {
            std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        fresh
    }
}
