//! `certgate-load`: an mTLS load generator for certgate or any other server
//! that terminates TLS with client certificates. It shares no code with the
//! server. This file is the entry point: it parses the command line, runs
//! the load and turns the outcome into the exit status.
//!
//! ```text
//! certgate-load --target 127.0.0.1:8443 --cert client.pem --key client.key \
//!     --ca ca.pem --sni localhost --mode full --concurrency 32 --duration 10s
//! ```
//!
//! Modes (one "operation" each):
//!
//! * `full`: TCP connect + full TLS handshake (resumption off) + one
//!   `GET <path> HTTP/1.1` with `Connection: close` + read the whole response
//!   + close_notify. Reports handshakes per second.
//! * `resume`: like `full`, but a shared in-memory session store lets later
//!   connections resume with tickets from earlier ones; `resumed` shows how
//!   many handshakes really did.
//! * `keepalive`: `--concurrency` connections, each sending requests one
//!   after another: HTTP/1.1 keep-alive, or with `--http2` one h2 connection
//!   per worker with one stream in flight, so concurrency = connections =
//!   requests in flight. Reports requests per second. A connection is
//!   reopened when the server closes it; setup time is not part of request
//!   latency, and a failed setup counts as one failed operation.
//! * `idle`: opens `--concurrency` connections (each: full handshake + one
//!   keep-alive `GET`), at most `--ramp-parallel` handshakes at a time, then
//!   holds them all open, idle, for `--duration` and closes them. One
//!   operation = one connection opened; `held` = connections still open at
//!   the end of the hold (one the server closes during the hold counts as a
//!   `closed` error). Meant for measuring the server's memory per idle
//!   connection: the line `certgate-load: holding N connections for D` goes
//!   to stderr (also with `--json`) when the ramp is over, so a script can
//!   sample the server then. `ops_per_sec` is connections opened per second
//!   of ramp; `elapsed_secs` is the ramp plus the hold.
//!
//! `--count N` stops after N operations, otherwise `--duration` (default
//! 10s); `--rate R` caps total operations per second across all workers;
//! `--warmup D` runs unmeasured operations for D first (`--count` and
//! `--warmup` do not apply to `idle`); the line `certgate-load: measuring`
//! goes to stderr (also with `--json`) when it ends, so that a script can
//! start counting the server's CPU there. Ctrl-C stops early and still
//! prints the report.
//!
//! Every connection needs a file descriptor: the soft `RLIMIT_NOFILE` is
//! raised to the hard limit at start, and a `--concurrency` that still does
//! not fit is refused up front (exit 2) with the `ulimit -n` to set.
//!
//! Report (`--json` prints the same as one object): `ops` = measured
//! operations, `ok` + `failed`; `ops_per_sec` and `latency_ms`
//! (`p50`/`p90`/`p99`/`max`, null if nothing succeeded) cover successful
//! operations only, i.e. a 2xx response. Latency runs from connect start
//! (`full`/`resume`) or request write (`keepalive`) to the end of the
//! response. `handshakes`/`resumed` count connections whose first response
//! arrived, since in TLS 1.3 a server refuses a client certificate only after
//! the client considers the handshake done. `errors` maps kind to count and
//! `error_examples` gives one message per kind.
//!
//! Error kinds: `connect`, `timeout` (`--timeout`, per operation), `closed`
//! (peer closed early), `reset`, `io`, `bad_response`, `http_<status>`,
//! `no_h2` (server did not pick h2 via ALPN), `http2`; `tls_alert_<name>` when
//! the server sent a fatal alert (`tls_alert_certificate_required`,
//! `tls_alert_bad_certificate`, `tls_alert_unknown_ca` usually mean it refused
//! our client certificate; rejected h2 connections can also show up as
//! `reset` when a write loses the race with the alert); `tls_unknown_ca`,
//! `tls_name_mismatch`, `tls_cert_expired`, `tls_bad_server_cert` when we
//! refused the server certificate; `tls_incompatible`, `tls_handshake`, `tls`.
//!
//! `--groups` limits the key exchange offered (e.g. `x25519` where the server
//! lacks X25519MLKEM768). Under TLS 1.2 it also limits the curves the
//! server's ECDSA certificate may use, so `--groups x25519` alone fails with
//! `tls_alert_handshake_failure` against a P-256 certificate on a TLS
//! 1.2-only server (nginx 1.22 defaults); add `secp256r1`.
//!
//! Exit status: 0 if it ran (even with errors), 1 if no operation succeeded,
//! 2 for bad command-line input or unusable certificate files.
//!
//! In a benchmark the tool runs on one core next to the server under test,
//! so per-operation client CPU is kept low: one shared `Arc<ClientConfig>`,
//! the target resolved once, a pre-rendered request sent in the same write as
//! the client Finished, an HTTP/1.1 response reader (httparse for the head)
//! on a per-worker buffer, per-worker latency vectors merged only at the end,
//! the server chain verification memoised (see `tls.rs`), and AES-128-GCM
//! offered first as browsers do.
//!
//! Where things are: `cli` (flags, validation, the prepared request), `tls`
//! (client config, verifier cache, ticket store), `fds` (RLIMIT_NOFILE),
//! `pacing` (rate, count and deadline), `conn` (what workers share, opening
//! a connection), `http1` (reading responses), `modes/` (one file per mode),
//! `run` (one run from start to report), `error` + `stats` + `report` (what
//! went wrong, what was counted, how it is shown).

#![forbid(unsafe_code)]

mod cli;
mod conn;
mod cpu;
mod error;
mod fds;
mod http1;
mod modes;
mod pacing;
mod report;
mod run;
mod stats;
mod tls;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, SetupError};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            // Help and version are answers, not errors: clap prints them and exits 0.
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("certgate-load: {} (see --help)", cli::cli_error(&e));
                return ExitCode::from(2);
            }
        },
    };
    let json = cli.json;
    let threads = usize::from(cli.threads);
    let result = cli::setup(cli).and_then(|s| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .map_err(SetupError::Runtime)?
            .block_on(run::run(s))
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("certgate-load: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        // The table says it too; with --json the warning goes to stderr beside the object.
        if let Some(busy) = report
            .client_busy
            .filter(|busy| *busy > report::BUSY_WARNING)
        {
            eprintln!(
                "certgate-load: the load tool was busy {:.0}% of the time: it, not the server, may have set the pace",
                busy * 100.0
            );
        }
        match serde_json::to_string(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("certgate-load: cannot encode report: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        report::print_table(&report);
    }
    // A run where nothing succeeded measured nothing; scripts must not take it for a result.
    if report.ok == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
