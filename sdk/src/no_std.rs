//! What the standard library would otherwise supply to a `no_std` plugin:
//! a heap and a panic handler.
//!
//! The point of going without `std`: Rust's standard library for
//! `wasm32-wasip2` imports thirteen WASI functions (stdio, environment,
//! exit) that every instance must link, and two of them can block, which
//! makes the gateway run each call on a separate stack. A plugin built on
//! this module imports only `tollgate:plugin/host`.
//!
//! The panic message goes to the gateway through `host.log` at `error`
//! level, in the same form the standard library writes to stderr
//! (`panicked at FILE:LINE:COL:` then the message), so the gateway reports
//! it with the trap either way.
//!
//! Only a `no_std` build for WebAssembly installs them; the formatting is
//! compiled (and tested) everywhere.

#![cfg_attr(feature = "std", allow(dead_code))]

use core::fmt::Write;

#[cfg(all(not(feature = "std"), target_family = "wasm"))]
#[global_allocator]
static HEAP: heap::Heap = heap::Heap::new();

/// Doug Lea's allocator (which wasi-libc's `malloc`, under Rust's standard
/// library, also is), fed first from a zeroed arena inside the module's initial
/// memory and only then from `memory.grow`.
///
/// Why the arena: every instance starts from the module's initial memory,
/// and a request that grows it costs the gateway far more than the request
/// itself. The pool must take the grown pages away again when it resets the
/// instance, and that `mprotect` flushes the TLB of every core. With
/// `dlmalloc`'s own WebAssembly backend, which always grows, the bundled
/// OpenAI adapter served a quarter fewer requests at concurrency 32. The
/// arena's pages cost nothing until written, and only the written ones are
/// reset.
#[cfg(all(not(feature = "std"), target_family = "wasm"))]
mod heap {
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::{Cell, UnsafeCell};
    use core::ptr;

    /// Enough for the buffers of a request of a few hundred KiB; larger ones
    /// grow the memory as before.
    const ARENA_BYTES: usize = 512 << 10;
    const PAGE_BYTES: usize = 64 << 10;

    #[repr(C, align(65536))]
    struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

    /// A plugin instance is single-threaded.
    unsafe impl Sync for Arena {}

    static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));

    /// Where `dlmalloc` gets its segments: the arena once, then new pages.
    struct Segments {
        arena_taken: Cell<bool>,
    }

    unsafe impl dlmalloc::Allocator for Segments {
        fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
            if !self.arena_taken.get() && size <= ARENA_BYTES {
                self.arena_taken.set(true);
                return (ARENA.0.get().cast(), ARENA_BYTES, 0);
            }
            let pages = size.div_ceil(PAGE_BYTES);
            let previous = core::arch::wasm32::memory_grow(0, pages);
            if previous == usize::MAX {
                return (ptr::null_mut(), 0, 0);
            }
            ((previous * PAGE_BYTES) as *mut u8, pages * PAGE_BYTES, 0)
        }

        fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
            ptr::null_mut()
        }

        fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
            false
        }

        fn free(&self, _: *mut u8, _: usize) -> bool {
            false
        }

        fn can_release_part(&self, _: u32) -> bool {
            false
        }

        fn allocates_zeros(&self) -> bool {
            true
        }

        fn page_size(&self) -> usize {
            PAGE_BYTES
        }
    }

    pub struct Heap(UnsafeCell<dlmalloc::Dlmalloc<Segments>>);

    /// A plugin instance is single-threaded.
    unsafe impl Sync for Heap {}

    impl Heap {
        pub const fn new() -> Heap {
            Heap(UnsafeCell::new(dlmalloc::Dlmalloc::new_with_allocator(
                Segments {
                    arena_taken: Cell::new(false),
                },
            )))
        }

        /// SAFETY: single-threaded, and the allocator never re-enters itself.
        #[allow(clippy::mut_from_ref)]
        unsafe fn get(&self) -> &mut dlmalloc::Dlmalloc<Segments> {
            unsafe { &mut *self.0.get() }
        }
    }

    unsafe impl GlobalAlloc for Heap {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            unsafe { self.get().malloc(layout.size(), layout.align()) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            unsafe { self.get().calloc(layout.size(), layout.align()) }
        }

        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            unsafe { self.get().free(block, layout.size(), layout.align()) }
        }

        unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            unsafe {
                self.get()
                    .realloc(block, layout.size(), layout.align(), new_size)
            }
        }
    }
}

/// The canonical ABI's allocation entry point, through which the gateway
/// writes a call's arguments into the plugin's memory. The standard library
/// exports it on `wasm32-wasip2`; without `std` the SDK must.
///
/// # Safety
///
/// Called by the host as the canonical ABI specifies: `old_ptr`/`old_len`
/// name a block this function returned before (or are null and 0), and
/// `align` is a power of two.
#[cfg(all(not(feature = "std"), target_family = "wasm"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, realloc};
    if new_len == 0 {
        return align as *mut u8;
    }
    // SAFETY: the caller's contract above; the layout's size is non-zero.
    let block = unsafe {
        if old_len == 0 {
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if block.is_null() {
        // Out of memory: trap, as the standard library's version does.
        core::arch::wasm32::unreachable();
    }
    block
}

// `memcpy`, `memcmp` and friends, which the compiler calls and the standard
// library would have linked: from the target's own C library, whose string
// functions import nothing.
#[cfg(all(not(feature = "std"), target_family = "wasm"))]
#[link(name = "c")]
unsafe extern "C" {}

/// How much of a panic message is kept. Formatting goes into this fixed
/// buffer, not the heap: the panic may be the heap running out.
const MESSAGE_CAPACITY: usize = 1024;

/// A panic message, cut at [`MESSAGE_CAPACITY`] bytes (on a character
/// boundary).
struct Message {
    bytes: [u8; MESSAGE_CAPACITY],
    len: usize,
}

impl Message {
    fn new() -> Self {
        Message {
            bytes: [0; MESSAGE_CAPACITY],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s, or their whole characters, are ever copied in.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Write for Message {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let take = s.floor_char_boundary(MESSAGE_CAPACITY - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// `panicked at FILE:LINE:COL:` and the message on the next line, as the
/// standard library prints it.
fn describe(
    location: Option<&core::panic::Location<'_>>,
    what: impl core::fmt::Display,
) -> Message {
    let mut message = Message::new();
    let _ = match location {
        Some(at) => writeln!(
            message,
            "panicked at {}:{}:{}:",
            at.file(),
            at.line(),
            at.column()
        ),
        None => writeln!(message, "panicked:"),
    };
    let _ = write!(message, "{what}");
    message
}

#[cfg(all(not(feature = "std"), target_family = "wasm"))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::sync::atomic::{AtomicBool, Ordering};
    // A panic while reporting a panic would recurse: the second one traps
    // at once.
    static REPORTING: AtomicBool = AtomicBool::new(false);
    if !REPORTING.swap(true, Ordering::Relaxed) {
        let message = describe(info.location(), info.message());
        crate::log(
            crate::bindings::tollgate::plugin::host::LogLevel::Error,
            message.as_str(),
        );
    }
    core::arch::wasm32::unreachable()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_reads_as_the_standard_librarys() {
        static SEEN: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| {
            let what = info.payload_as_str().unwrap_or_default();
            *SEEN.lock().unwrap() = describe(info.location(), what).as_str().to_owned();
        }));
        let result = std::panic::catch_unwind(|| panic!("something broke: {}", 42));
        std::panic::set_hook(hook);
        assert!(result.is_err());
        let seen = SEEN.lock().unwrap().clone();
        assert!(seen.starts_with("panicked at sdk/src/no_std.rs:"), "{seen}");
        assert!(seen.ends_with(":\nsomething broke: 42"), "{seen}");
    }

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary() {
        let mut message = Message::new();
        let long = "é".repeat(MESSAGE_CAPACITY);
        message.write_str("x").unwrap();
        message.write_str(&long).unwrap();
        let text = message.as_str();
        assert!(text.len() <= MESSAGE_CAPACITY && text.len() > MESSAGE_CAPACITY - 2);
        assert!(text.starts_with("xé"));
        assert!(text.ends_with('é'));
    }
}
