//! The `certgate` commands behind `main.rs`: `serve`, `check-config` and `echo`; the operator's
//! commands on the registry and the CA (bank staff, on the server's machine); and `client`, the
//! user's side.
//!
//! Every operator command opens the registry named by `--config`, does one thing and prints the
//! result on stdout (aligned columns under a header, or JSON with `--json`). A refusal is one
//! line `certgate: <message>` on stderr and changes nothing. Exit codes: 0 done, 1 refused,
//! 2 bad input or configuration, 3 not found.

pub mod args;
pub mod client;
mod operator;
mod output;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

pub use args::{
    CaCommand, CertCommand, Cli, ClientCommand, Command, Common, CorpCommand, PermitCommand,
    UserCommand,
};
pub use operator::Operator;
pub use output::Output;

use crate::config::{Config, LogConfig, LogFormat};
use crate::lifecycle::LifecycleError;
use crate::serve::ServeError;

/// Exit code: refused.
pub const REFUSED: u8 = 1;
/// Exit code: bad input or configuration (what clap uses for bad flags).
pub const BAD_INPUT: u8 = 2;
/// Exit code: the corporation, user or certificate named does not exist.
pub const NOT_FOUND: u8 = 3;

/// The exit code of a lifecycle refusal.
pub fn exit_code(err: &LifecycleError) -> u8 {
    match err {
        LifecycleError::Invalid { .. }
        | LifecycleError::BadCsr(_)
        | LifecycleError::BadP12Password(_)
        | LifecycleError::CredentialsRequired => BAD_INPUT,
        LifecycleError::NotFound { .. } => NOT_FOUND,
        _ => REFUSED,
    }
}

/// Prints `certgate: <message>` on stderr and returns `code`.
pub fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("certgate: {message}");
    ExitCode::from(code)
}

fn current_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| fail(REFUSED, &format!("cannot start the runtime: {err}")))
}

/// `certgate serve`.
pub fn serve(config_path: &Path) -> ExitCode {
    match Config::load(config_path) {
        Ok(loaded) => crate::serve::init_logging(&loaded.log),
        Err(err) => return fail(BAD_INPUT, &err.to_string()),
    }
    // Given one core (an affinity mask, a container's CPU quota), the work-stealing scheduler has
    // nothing to balance and only adds cost: about a tenth of the CPU per TLS handshake
    // (BENCHMARKS.md, run 7).
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return fail(REFUSED, &format!("cannot start the runtime: {err}")),
    };
    match runtime.block_on(crate::serve::serve(config_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => serve_failure(&err),
    }
}

/// `certgate check-config`.
pub fn check_config(config_path: &Path) -> ExitCode {
    match crate::serve::check_config(config_path) {
        Ok(()) => {
            println!("{}: OK", config_path.display());
            ExitCode::SUCCESS
        }
        Err(err) => serve_failure(&err),
    }
}

/// `certgate echo`.
pub fn echo(listen: SocketAddr) -> ExitCode {
    crate::serve::init_logging(&LogConfig {
        format: LogFormat::Text,
        level: "info".into(),
        access: false,
    });
    let runtime = match current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        crate::proxy::serve_echo(listener).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(REFUSED, &format!("--listen {listen}: {err}")),
    }
}

fn serve_failure(err: &ServeError) -> ExitCode {
    match err {
        ServeError::Config(err) => fail(BAD_INPUT, &err.to_string()),
        ServeError::Runtime(message) => fail(REFUSED, message),
    }
}

/// `certgate init`: the root CA and generation g1 under `pki.dir`; refuses when one exists.
pub fn init(common: &Common) -> ExitCode {
    let config = match Config::load(&common.config) {
        Ok(config) => config,
        Err(err) => return fail(BAD_INPUT, &err.to_string()),
    };
    let settings = crate::pki::PkiSettings::from(&config.pki);
    match crate::pki::Pki::init(settings, crate::model::now()) {
        Ok(pki) => {
            let generation = pki.current();
            let key = &config.pages.secret_file;
            let made_key = match crate::api::pages::PageKey::load_or_create(key) {
                Ok((_, made)) => made,
                Err(err) => return fail(REFUSED, &format!("pages.secret_file: {err}")),
            };
            let output = Output::Done {
                text: format!(
                    "made the root CA and generation {} ({}) in {}{}",
                    generation.name,
                    generation.unit,
                    config.pki.dir.display(),
                    if made_key {
                        format!("; the pages' form key in {}", key.display())
                    } else {
                        String::new()
                    }
                ),
                json: serde_json::json!({
                    "dir": config.pki.dir.display().to_string(),
                    "generation": generation.name,
                    "unit": generation.unit,
                }),
            };
            print!("{}", output.render(common.json));
            ExitCode::SUCCESS
        }
        Err(err) => fail(REFUSED, &format!("pki.dir: {err}")),
    }
}

/// Runs an operator command on the registry named by `--config`.
pub fn run(common: &Common, command: Operator) -> ExitCode {
    let config = match Config::load(&common.config) {
        Ok(config) => config,
        Err(err) => return fail(BAD_INPUT, &err.to_string()),
    };
    let runtime = match current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let lifecycle = match crate::serve::open_operator_lifecycle(&config).await {
            Ok(lifecycle) => lifecycle,
            Err(err) => return serve_failure(&err),
        };
        let result = operator::operate(&lifecycle, &config, command).await;
        lifecycle.store().close().await;
        match result {
            Ok(output) => {
                print!("{}", output.render(common.json));
                ExitCode::SUCCESS
            }
            Err(err) => fail(exit_code(&err), &err.to_string()),
        }
    })
}

/// `certgate notify --once`: the expiry e-mails due now; exit 1 when some could not be sent.
pub fn notify(common: &Common, once: bool) -> ExitCode {
    if !once {
        return fail(
            BAD_INPUT,
            "certgate notify runs with --once; certgate serve sends the notices every notify.interval",
        );
    }
    let config = match Config::load(&common.config) {
        Ok(config) => config,
        Err(err) => return fail(BAD_INPUT, &err.to_string()),
    };
    let runtime = match current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let lifecycle = match crate::serve::open_operator_lifecycle(&config).await {
            Ok(lifecycle) => lifecycle,
            Err(err) => return serve_failure(&err),
        };
        let notifier = match crate::notify::Notifier::new(
            &config.notify,
            lifecycle.store().clone(),
            lifecycle.clock().clone(),
        ) {
            Ok(Some(notifier)) => notifier,
            Ok(None) => {
                return fail(
                    BAD_INPUT,
                    "notify.smtp_url: not set; there is nowhere to send notices",
                );
            }
            Err(err) => return fail(BAD_INPUT, &err.to_string()),
        };
        let result = notifier.run_once().await;
        lifecycle.store().close().await;
        match result {
            Ok(report) => {
                let output = Output::Done {
                    text: format!(
                        "expiry notices: {} sent, {} not sent",
                        report.sent, report.failed
                    ),
                    json: serde_json::json!({ "sent": report.sent, "failed": report.failed }),
                };
                print!("{}", output.render(common.json));
                if report.failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(REFUSED)
                }
            }
            Err(err) => fail(REFUSED, &err.to_string()),
        }
    })
}

/// `certgate tickets rotate`.
pub fn tickets(command: args::TicketsCommand) -> ExitCode {
    let args::TicketsCommand::Rotate { file } = command;
    let existing = if file.exists() {
        match crate::tls::read_key_file(&file) {
            Ok(existing) => Some(existing),
            Err(err) => return fail(BAD_INPUT, &err.to_string()),
        }
    } else {
        None
    };
    let rotated = match crate::tls::KeyFile::rotated(existing.as_ref()) {
        Ok(rotated) => rotated,
        Err(why) => return fail(REFUSED, &why),
    };
    if let Err(err) = crate::tls::write_key_file(&file, &rotated) {
        return fail(REFUSED, &format!("cannot write {}: {err}", file.display()));
    }
    println!(
        "{} {}: {}",
        if existing.is_some() {
            "rotated"
        } else {
            "made"
        },
        file.display(),
        rotated.stages().join(", ")
    );
    ExitCode::SUCCESS
}

/// Runs a client command.
pub fn run_client(command: ClientCommand) -> ExitCode {
    let runtime = match current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = match command {
        ClientCommand::Enroll {
            server,
            corp_id,
            user_id,
            out,
            ca,
        } => runtime.block_on(async {
            let server = client::Server::new(server, ca)?;
            let pin = client::read_pin()?;
            client::enroll(&server, &corp_id, user_id.as_deref(), &pin, &out).await
        }),
        ClientCommand::Renew {
            server,
            cert,
            key,
            ca,
            daemon,
            interval,
        } => runtime.block_on(async {
            let server = client::Server::new(server, ca)?;
            if daemon {
                let interval = client::parse_interval(&interval)?;
                crate::serve::init_logging(&LogConfig {
                    format: LogFormat::Text,
                    level: "info".into(),
                    access: false,
                });
                return client::renew_daemon(&server, &cert, &key, interval)
                    .await
                    .map(|never| match never {});
            }
            client::renew(&server, &cert, &key)
                .await
                .map(|renewal| renewal.to_string())
        }),
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => fail(err.code, &err.message),
    }
}
