//! The `streamscore` binary: everything lives in the library; this only sets the allocator's
//! arenas (before any thread starts) and hands over to the CLI.

fn main() -> std::process::ExitCode {
    streamscore::memory::cap_malloc_arenas();
    streamscore::cli::main()
}
