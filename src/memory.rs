//! Process memory: the allocator and its settings.
//!
//! The binary allocates with jemalloc, built unprefixed (`tikv-jemallocator`'s
//! `unprefixed_malloc_on_supported_platforms`), so it is also the `malloc` of the C code linked
//! in, librdkafka above all: every consumed and produced record is a librdkafka allocation,
//! made on one thread and freed on another (the scorer produces, the delivery thread frees).
//! glibc's malloc spent a sixth of the daemon's CPU there, much of it waiting on its arena
//! locks; jemalloc's per-thread caches take that off (README, "Benchmarks").

use std::ffi::{c_char, CStr};

/// A NUL-terminated C string in a `static` jemalloc reads (`const char *malloc_conf`).
#[repr(transparent)]
pub struct ConfString(*const c_char);

// SAFETY: it points at a `'static` string literal that nothing writes.
unsafe impl Sync for ConfString {}

/// jemalloc's settings: two arenas (the daemon runs a dozen allocating threads on few cores;
/// more arenas hold more freed memory apart), and freed pages returned to the system after a
/// second instead of ten, by jemalloc's background thread rather than by the thread that
/// frees. Returning them at once (`dirty_decay_ms:0`) cut the pipeline bench's peak RSS from
/// 96 to 84–89 MB but cost about 2 µs of CPU a record and 20–40 ms of p99 latency: librdkafka
/// frees and refaults its fetch buffers all the time (README, "Benchmarks"). `MALLOC_CONF` in
/// the environment overrides any of them.
pub const SETTINGS: &CStr =
    c"narenas:2,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";

/// [`SETTINGS`] as the `malloc_conf` symbol jemalloc reads at its first allocation; the
/// binary exports it (`#[export_name = "malloc_conf"]`).
pub const JEMALLOC_CONF: ConfString = ConfString(SETTINGS.as_ptr());
