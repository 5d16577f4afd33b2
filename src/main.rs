// glibc's malloc, its free-list upkeep and consolidation were ≈ 17% of ferry's CPU
// samples under load; mimalloc's per-thread pages cost less per allocation. The
// heap profiler installs its own allocator instead.
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ferry::cli::main()
}
