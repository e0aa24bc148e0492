//! The `lienthong` binary: everything lives in the library; see `lienthong --help`.

fn main() -> std::process::ExitCode {
    lienthong::cli::main()
}
