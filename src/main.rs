//! The `zolder` binary: parses the command line and hands each subcommand to its
//! function in `zolder::cli`. Called as `sendmail`, `mailq` or `newaliases` (argv[0]),
//! it behaves as those commands do.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = zolder::cli::main();
    ExitCode::from(code.clamp(0, 255) as u8)
}
