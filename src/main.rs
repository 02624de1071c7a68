//! The `streamscore` binary: everything lives in the library; this only picks the allocator
//! (see [`streamscore::memory`]) and hands over to the CLI.

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its first allocation (`MALLOC_CONF` in the environment still
/// overrides them): see [`streamscore::memory::JEMALLOC_CONF`].
#[export_name = "malloc_conf"]
static MALLOC_CONF: streamscore::memory::ConfString = streamscore::memory::JEMALLOC_CONF;

fn main() -> std::process::ExitCode {
    streamscore::cli::main()
}
