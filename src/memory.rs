//! Process memory: how many malloc arenas glibc may create.
//!
//! glibc gives threads that allocate at the same time arenas of their own, up to eight per
//! core. The daemon runs a dozen allocating threads (each worker's consumer and scorer, and
//! librdkafka's broker threads, which allocate every fetch and produce buffer), so memory
//! freed in one arena sits unused while another grows: on the pipeline bench, peak RSS fell by
//! about a tenth with two arenas and throughput did not move (README, "Benchmarks"). Two
//! arenas is what many services that embed C clients settle on. `MALLOC_ARENA_MAX` in the
//! environment still wins: glibc reads it itself, and then this leaves the setting alone.

/// Arenas when the environment does not say.
pub const DEFAULT_MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`DEFAULT_MALLOC_ARENAS`] unless `MALLOC_ARENA_MAX` is set.
/// Call it first in `main`, before any thread starts. Elsewhere than glibc it does nothing.
pub fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it takes no pointers, and at the
        // start of `main` no other thread allocates.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, DEFAULT_MALLOC_ARENAS);
        }
    }
}
