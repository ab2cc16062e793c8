//! `simbench`: parse the command line, run it through [`sim::cli`], exit
//! with its code (0 pass, 1 fail, 2 bad input; see docs/cli.md).

use std::process::ExitCode;

use clap::Parser;
use sim::cli;

fn main() -> ExitCode {
    let args = cli::args::Args::parse();
    sim::malloc::tune(args.command.malloc_profile());
    cli::init_tracing();
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    match cli::execute(args, &mut out, &mut err) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit().code())
        }
    }
}
