#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    contactsd::cli::main()
}
