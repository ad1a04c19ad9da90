//! The command line, as clap parses it. `main.rs` parses [`Cli`] and hands each command to the
//! functions of [`crate::cli`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::DEFAULT_PATH;

const EXIT_CODES: &str = "\
Exit codes: 0 done; 1 refused (a conflict, a rule of the lifecycle, a server that refused or \
could not be reached); 2 bad input or configuration (a malformed value, a bad flag, an unusable \
config file); 3 not found (corporation, user, certificate).";

/// mTLS-terminating reverse proxy that hands a banking application the caller's verified identity.
#[derive(Debug, Parser)]
#[command(name = "certgate", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The options every operator command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The configuration file.
    #[arg(long, default_value = DEFAULT_PATH, global = true)]
    pub config: PathBuf,
    /// Print JSON instead of aligned columns (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// `certgate <command>`.
#[expect(
    missing_docs,
    reason = "the `command` and `common` fields are documented by their types; a doc comment there would become clap help text"
)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: terminate TLS, verify client certificates, forward to the upstream.
    Serve {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Validate the configuration and every file it names, then exit.
    CheckConfig {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Answer every request with its method, path and headers as JSON (plain HTTP).
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Make certgate's CA under pki.dir: a root and the first issuing generation (g1); refuses
    /// when one exists.
    Init {
        #[command(flatten)]
        common: Common,
    },
    /// Contract corporations.
    Corp {
        #[command(subcommand)]
        command: CorpCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Users of a corporation.
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Enrollment permits (temporary PINs).
    Permit {
        #[command(subcommand)]
        command: PermitCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Issued certificates.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
        #[command(flatten)]
        common: Common,
    },
    /// The audit trail, newest first.
    Audit {
        /// Only this corporation.
        #[arg(long)]
        corp_id: Option<String>,
        /// How many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        common: Common,
    },
    /// CA generations.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Sign every CA generation's CRL now, with every revocation made so far; prints the files.
    Crl {
        #[command(flatten)]
        common: Common,
    },
    /// Who is refused, as every running certgate holds it in memory.
    Standing {
        #[command(subcommand)]
        command: StandingCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Expiry e-mails (`[notify]`): send what is due now, once, and exit (`serve` does this every
    /// `notify.interval`).
    Notify {
        /// Run once (the only mode: `serve` runs it periodically).
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        common: Common,
    },
    /// TLS session ticket keys shared by every replica (`server.ticket_keys`).
    Tickets {
        #[command(subcommand)]
        command: TicketsCommand,
    },
    /// The user's side: enroll and renew, keeping the key on this machine.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
}

/// `certgate tickets …`
#[derive(Debug, Subcommand)]
pub enum TicketsCommand {
    /// Move the keys one stage along: a new key enters as next (decrypt only), next becomes
    /// current (encrypts), current becomes previous (decrypt only), previous is dropped. Makes the
    /// file (current and next) when it does not exist. Written atomically, mode 0600; replicas
    /// read it within seconds (and on SIGHUP). Rotate more often than `server.ticket_lifetime`.
    Rotate {
        /// The key file every replica's `server.ticket_keys` names.
        #[arg(long)]
        file: PathBuf,
    },
}

/// `certgate standing …`
#[derive(Debug, Subcommand)]
pub enum StandingCommand {
    /// Make every certgate process on this registry load the whole standing again (after a
    /// restore from backup or a change made to the database by hand); a running server applies
    /// it within `revocation.poll`. Changes made through certgate need no reload.
    Reload,
}

/// `certgate corp …`
#[derive(Debug, Subcommand)]
pub enum CorpCommand {
    /// Register a contract corporation.
    Add {
        /// The corporation ID (ASCII letters and digits; 14 digits at most banks).
        #[arg(long)]
        corp_id: String,
        /// Its name.
        #[arg(long)]
        name: String,
        /// The administrator's e-mail (expiry notices go there).
        #[arg(long)]
        admin_email: String,
    },
    /// Change a corporation: whether every user must log in with a certificate.
    Set {
        /// The corporation ID.
        #[arg(long)]
        corp_id: String,
        /// `true`: ID + PIN login is refused for its users from now on; `false` allows it again.
        #[arg(long, action = clap::ArgAction::Set)]
        cert_required: bool,
    },
    /// Stop a corporation's service: every certificate of it is refused from its next request,
    /// on every replica, until `corp resume`.
    Stop {
        /// The corporation ID.
        #[arg(long)]
        corp_id: String,
    },
    /// Resume a stopped corporation's service.
    Resume {
        /// The corporation ID.
        #[arg(long)]
        corp_id: String,
    },
    /// List every corporation.
    List,
    /// Show one corporation.
    Show {
        /// The corporation ID.
        #[arg(long)]
        corp_id: String,
    },
}

/// `certgate user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Register a user of a corporation.
    Add {
        /// The corporation ID.
        #[arg(long)]
        corp_id: String,
        /// The user ID (1 to 30 ASCII letters and digits).
        #[arg(long)]
        user_id: String,
        /// `master` (one per corporation), `admin` or `general`.
        #[arg(long)]
        role: String,
        /// The user's e-mail.
        #[arg(long)]
        email: Option<String>,
        /// The user's name (利用者名), shown in the status table.
        #[arg(long)]
        name: Option<String>,
    },
    /// The status table of a corporation's users: unissued, issued, renewable, expired, revoked.
    List {
        /// The corporation ID.
        #[arg(long)]
        corp_id: String,
    },
    /// Reset a manager's confirmation password (確認用パスワード), after they forgot it or it
    /// locked: they set a new one on their next use of the admin page.
    ResetConfirmation {
        /// The corporation ID.
        #[arg(long)]
        corp_id: String,
        /// The user ID; without it, the corporation's administrator.
        #[arg(long)]
        user_id: Option<String>,
    },
    /// Suspend a user: their certificate is refused until resumed.
    Suspend {
        /// The corporation ID.
        #[arg(long)]
        corp_id: String,
        /// The user ID.
        #[arg(long)]
        user_id: String,
    },
    /// Resume a suspended user.
    Resume {
        /// The corporation ID.
        #[arg(long)]
        corp_id: String,
        /// The user ID.
        #[arg(long)]
        user_id: String,
    },
}

/// `certgate permit …`
#[derive(Debug, Subcommand)]
pub enum PermitCommand {
    /// Issue a temporary PIN for the next enrollment (superseding an earlier one); prints the
    /// PIN alone on stdout, the rest on stderr.
    Issue {
        /// The corporation ID.
        #[arg(long)]
        corp_id: String,
        /// The user ID; omitted for the corporation's administrator.
        #[arg(long)]
        user_id: Option<String>,
    },
}

/// `certgate cert …`
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// List the certificates of one corporation, or of all.
    List {
        /// Only this corporation.
        #[arg(long)]
        corp_id: Option<String>,
    },
    /// Show one certificate.
    Show {
        /// Its serial in hex (`3a1f…`, `3A:1F:…` and `0x3a1f…` are all accepted).
        serial: String,
    },
    /// Revoke a certificate and every certificate renewed from it.
    Revoke {
        /// Its serial in hex.
        serial: String,
        /// An RFC 5280 reason name: unspecified, keyCompromise, cACompromise,
        /// affiliationChanged, superseded, cessationOfOperation, certificateHold,
        /// privilegeWithdrawn, aACompromise.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
}

/// `certgate ca …`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make the next CA generation, which signs from now on (send SIGHUP to `serve`).
    Rotate,
    /// List the CA generations.
    List,
}

/// `certgate client …`
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Make a key here, enroll with the temporary PIN (`CERTGATE_PIN` or asked), write
    /// `key.pem` (0600) and `cert.pem` (leaf + chain) into `--out`.
    Enroll {
        /// The certgate server, e.g. `https://bank.example:8443`.
        #[arg(long)]
        server: String,
        /// The corporation ID.
        #[arg(long)]
        corp_id: String,
        /// The user ID; omitted for the corporation's administrator.
        #[arg(long)]
        user_id: Option<String>,
        /// Directory for `key.pem` and `cert.pem`.
        #[arg(long)]
        out: PathBuf,
        /// PEM CA certificates to trust for the server; default the system's.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Renew the certificate inside its renewal window (does nothing before), replacing the
    /// files atomically.
    Renew {
        /// The certgate server.
        #[arg(long)]
        server: String,
        /// The current certificate (PEM, leaf first).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// PEM CA certificates to trust for the server; default the system's.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Keep running and check twice a day; a failed check is logged and retried.
        #[arg(long)]
        daemon: bool,
        /// Time between checks with --daemon.
        #[arg(long, default_value = "12h", hide = true)]
        interval: String,
    },
}
