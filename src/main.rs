//! The `certgate` command line: parses it and hands over to [`certgate::cli`].

use std::process::ExitCode;

use clap::Parser as _;

use certgate::cli::{self, Cli, Command, Operator};

/// See Cargo.toml: cheaper allocation on the request path than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The redis crate builds its `rediss://` TLS client from the process-wide default provider;
    // the rest of certgate passes `tls::provider()` explicitly. Installing fails only when a
    // default is already set, which is then the same one.
    let _ = rustls::crypto::CryptoProvider::install_default((*certgate::tls::provider()).clone());
    match Cli::parse().command {
        Command::Serve { config } => cli::serve(&config),
        Command::CheckConfig { config } => cli::check_config(&config),
        Command::Echo { listen } => cli::echo(listen),
        Command::Init { common } => cli::init(&common),
        Command::Corp { command, common } => cli::run(&common, Operator::Corp(command)),
        Command::User { command, common } => cli::run(&common, Operator::User(command)),
        Command::Permit { command, common } => cli::run(&common, Operator::Permit(command)),
        Command::Cert { command, common } => cli::run(&common, Operator::Cert(command)),
        Command::Audit {
            corp_id,
            limit,
            common,
        } => cli::run(&common, Operator::Audit { corp_id, limit }),
        Command::Ca { command, common } => cli::run(&common, Operator::Ca(command)),
        Command::Crl { common } => cli::run(&common, Operator::Crl),
        Command::Standing { command, common } => cli::run(&common, Operator::Standing(command)),
        Command::Tickets { command } => cli::tickets(command),
        Command::Notify { once, common } => cli::notify(&common, once),
        Command::Client { command } => cli::run_client(command),
    }
}
