//! `fleetctl`: the operator's command line for `fleet-server` (see
//! `server::fleetctl`).

use clap::Parser;

fn main() {
    // clap exits 2 on bad arguments, as `fleetctl`'s exit codes document.
    let cli = server::fleetctl::Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let code = rt.block_on(server::fleetctl::run(
        cli,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ));
    std::process::exit(code);
}
