#![forbid(unsafe_code)]

/// mimalloc rather than the system allocator: a request allocates and frees dozens of small
/// strings, and glibc's malloc took 14% of the server's CPU time on a page-1 listing (see
/// docs/BENCHMARKS.md for the measured gain); it also returns freed memory to the system sooner.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    contactsd::cli::main()
}
