//! The `mandate` command line: `serve`, `migrate` and the operator commands of
//! SPEC §10. Every subcommand takes `--config` (or `MANDATE_CONFIG`) and the
//! `MANDATE_*` overrides, and `--json` for machine-readable output.

mod admin;
mod demo_api;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "mandate",
    version,
    about = "OAuth 2.1 authorization server for AI-agent delegation"
)]
pub struct Args {
    /// Configuration file (default: ./mandate.toml when it exists).
    #[arg(long, global = true, env = "MANDATE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the authorization server.
    Serve {
        /// Seed demo resources, a demo agent client and a demo user, and print what to try.
        #[arg(long)]
        demo: bool,
    },
    /// Apply database migrations (serve also does this at start).
    Migrate,
    /// A small protected API (invoices) built on the resource-server module.
    DemoApi {
        /// The issuer whose tokens are accepted.
        #[arg(long)]
        issuer: String,
        /// Where to listen, e.g. 127.0.0.1:9000.
        #[arg(long)]
        bind: std::net::SocketAddr,
        /// The resource identifier (the `aud` of its tokens).
        #[arg(long)]
        resource: String,
        /// How recent the user's authentication must be for a dispute.
        #[arg(long, default_value_t = 300)]
        max_auth_age: i64,
    },
    /// Manage clients.
    #[command(subcommand)]
    Client(admin::ClientCmd),
    /// Manage users.
    #[command(subcommand)]
    User(admin::UserCmd),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(admin::KeysCmd),
    /// Read and verify the audit trail.
    #[command(subcommand)]
    Audit(admin::AuditCmd),
    /// Inspect access tokens.
    #[command(subcommand)]
    Token(admin::TokenCmd),
    /// Initial access tokens for `POST /register` (registration mode "token").
    #[command(subcommand)]
    RegistrationToken(admin::RegistrationTokenCmd),
}

/// A failure of a command: printed as one line, exit code 1 (2 for config).
#[derive(Debug)]
pub enum CliError {
    Config(String),
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError::Failed(e.to_string())
    }
}

pub fn fail(msg: impl Into<String>) -> CliError {
    CliError::Failed(msg.into())
}

pub fn run(args: Args) -> ExitCode {
    init_tracing(
        args.log_format,
        matches!(
            args.command,
            Command::Serve { .. } | Command::DemoApi { .. }
        ),
    );
    if let Command::DemoApi {
        issuer,
        bind,
        resource,
        max_auth_age,
    } = &args.command
    {
        // The demo API needs no configuration file or database of its own.
        let (issuer, bind, resource, max_auth_age) =
            (issuer.clone(), *bind, resource.clone(), *max_auth_age);
        return finish(
            runtime().map(|rt| rt.block_on(demo_api::run(issuer, bind, resource, max_auth_age))),
        );
    }
    let config = match Config::load(args.config.as_deref(), &Config::env_overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mandate: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return finish(Err(e)),
    };
    let json = args.json;
    let result = rt.block_on(async move {
        match args.command {
            Command::DemoApi { .. } => Ok(()),
            Command::Serve { demo } => serve::run(config, demo).await,
            Command::Migrate => serve::migrate(config, json).await,
            Command::Client(cmd) => admin::client(config, cmd, json).await,
            Command::User(cmd) => admin::user(config, cmd, json).await,
            Command::Keys(cmd) => admin::keys(config, cmd, json).await,
            Command::Audit(cmd) => admin::audit(config, cmd, json).await,
            Command::Token(cmd) => admin::token(config, cmd, json).await,
            Command::RegistrationToken(cmd) => admin::registration_token(config, cmd, json).await,
        }
    });
    finish(Ok(result))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the runtime: {e}")))
}

/// The exit code of a command's result, its error printed as one line.
fn finish(result: Result<Result<(), CliError>, CliError>) -> ExitCode {
    match result.and_then(|r| r) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Config(m)) => {
            eprintln!("mandate: invalid configuration: {m}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(m)) => {
            eprintln!("mandate: {m}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout is for command output). Filter from `MANDATE_LOG`;
/// `info` for the server, `warn` for one-shot commands.
fn init_tracing(format: LogFormat, server: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if server { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("MANDATE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}
