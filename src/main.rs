//! The `runner` binary: parse the command line, set up logging, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use runner::cli::Cli;
use runner::Error;

fn main() -> ExitCode {
    // Output piped into `head` ends quietly, as for any Unix tool, instead of panicking.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    runner::ops::keep_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => tracing::Level::WARN,
        (false, true) => tracing::Level::DEBUG,
        (false, false) => tracing::Level::INFO,
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .init();
    match cli.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                Error::Config(rendered) => eprintln!("{rendered}"),
                other => eprintln!("error: {other}"),
            }
            // 143 rather than 130 when SIGTERM (a scheduler, `kill`) stopped it instead of Ctrl-C.
            let code = match e {
                Error::Interrupted(_) | Error::SweepInterrupted(_) => runner::interrupt::exit_code(),
                _ => None,
            };
            ExitCode::from(code.unwrap_or_else(|| e.exit_code()))
        }
    }
}
