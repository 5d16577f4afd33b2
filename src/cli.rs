//! The command line. `ferry serve` runs the product; the other commands help people
//! get started and debug.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{ALL_ROLES, Role};
use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "ferry: an instant-messaging WebSocket gateway, Kafka-backed and event-sourced",
    long_about = "ferry speaks the mobile IM protocol over WebSocket (/ws?token=…&userId=…&platform=…&deviceId=…).\n\
With no configuration it runs on one machine with an embedded durable log and store under ./ferry-data.\n\
Point it at Kafka and ScyllaDB with a config file (--config) or FERRY_* variables for production.\n\n\
Quick start:\n  ferry serve                      # embedded default on 127.0.0.1:8080\n  ferry token alice                # a JWT for user alice\n  ferry client listen alice        # print what alice receives\n  ferry client send alice single:alice-bob 'hi bob'"
)]
struct Cli {
    /// TOML configuration file; `FERRY_<SECTION>__<KEY>` variables override it.
    #[arg(long, short, global = true, env = "FERRY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run ferry: the gateway and every pipeline role, or those given with --role.
    Serve {
        /// Run only these roles (repeatable). Default: all.
        #[arg(long = "role", value_enum)]
        roles: Vec<Role>,
    },
    /// Apply the CQL schema (schemas/ferry.cql) to the configured ScyllaDB/Cassandra; idempotent.
    Migrate,
    /// Print a JWT for a user, signed with the configured key (or the development secret).
    Token {
        user_id: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
        /// Bind the token to a platform.
        #[arg(long)]
        platform: Option<String>,
        /// Bind the token to a device.
        #[arg(long)]
        device_id: Option<String>,
    },
    /// Print the server API's service token (configured or development).
    ServiceToken,
    /// A small protocol client: listen, send, sync.
    #[command(subcommand)]
    Client(crate::client::ClientCommand),
    /// Print the effective configuration (defaults, file, environment) as TOML.
    Config,
    /// Rebuild the store from the inbound topic (dry run unless --execute).
    Replay(crate::recovery::ReplayArgs),
    /// Create, describe and watch the lag of ferry's topics.
    #[command(subcommand)]
    Topics(crate::recovery::TopicsCommand),
    /// Consumer group administration.
    #[command(subcommand)]
    Groups(crate::recovery::GroupsCommand),
    /// Store inspection for recovery.
    #[command(subcommand)]
    Store(crate::recovery::StoreCommand),
    /// Offline hand-off events for mobile push.
    #[command(subcommand)]
    Offline(crate::recovery::OfflineCommand),
}

pub fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    crate::heap_profile::start();
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command, cfg));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, cfg: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { roles } => {
            let roles = if roles.is_empty() {
                let mut all = ALL_ROLES.to_vec();
                if cfg.offline.forwarder.url.is_some() {
                    all.push(Role::Forwarder);
                }
                all
            } else {
                roles
            };
            serve(cfg, roles).await
        }
        Command::Token {
            user_id,
            ttl,
            platform,
            device_id,
        } => {
            let dev = crate::secrets::auth_dev_secret(&cfg)?;
            let mut extra = Vec::new();
            if let Some(p) = &platform {
                extra.push(("platform", p.as_str()));
            }
            if let Some(d) = &device_id {
                extra.push(("deviceId", d.as_str()));
            }
            println!(
                "{}",
                crate::gateway::auth::mint(&cfg.auth, dev.as_deref(), &user_id, ttl, &extra)?
            );
            Ok(())
        }
        Command::Migrate => {
            if cfg.store.kind != crate::config::StoreKind::Scylla {
                println!(
                    "store.kind is embedded: its tables are created on start, nothing to migrate"
                );
                return Ok(());
            }
            let report =
                crate::store::scylla::migrate(&crate::backends::scylla_settings(&cfg)).await?;
            println!(
                "keyspace {}: {} statements applied, created: {}",
                report.keyspace,
                report.statements,
                if report.created.is_empty() {
                    "nothing (already up to date)".to_owned()
                } else {
                    report.created.join(", ")
                }
            );
            Ok(())
        }
        Command::ServiceToken => {
            println!("{}", crate::secrets::service_token(&cfg)?);
            Ok(())
        }
        Command::Client(c) => crate::client::run(c, &cfg).await,
        Command::Config => {
            print!("{}", toml::to_string_pretty(&cfg.redacted())?);
            Ok(())
        }
        Command::Replay(a) => crate::recovery::replay(a, &cfg).await,
        Command::Topics(c) => crate::recovery::topics(c, &cfg).await,
        Command::Groups(c) => crate::recovery::groups(c, &cfg).await,
        Command::Store(c) => crate::recovery::store(c, &cfg).await,
        Command::Offline(c) => crate::recovery::offline(c, &cfg).await,
    }
}

async fn serve(cfg: Config, roles: Vec<Role>) -> anyhow::Result<()> {
    crate::telemetry::init(&cfg.telemetry, &cfg.pod)?;
    let metrics = crate::telemetry::init_metrics();
    let embedded = cfg.log.kind == crate::config::LogKind::Embedded;
    let data_dir = cfg.data_dir.clone();
    let demo = roles.contains(&Role::Gateway) && crate::secrets::dev_endpoints(&cfg);
    // Installed before ferry says it is listening: a SIGTERM that follows at once
    // (a supervisor, a test) drains instead of killing the process.
    let signals = Signals::install()?;
    let running = crate::app::start(cfg, &roles, metrics).await?;
    println!(
        "ferry listening on http://{} (WebSocket ws://{}/ws)",
        running.addr, running.addr
    );
    if demo {
        println!("chat demo: http://{}/demo", running.addr);
    }
    if embedded {
        println!(
            "embedded backend, data in {}; mint a token with `ferry token <userId>`",
            data_dir.display()
        );
    }
    tracing::info!(addr = %running.addr, ?roles, "ferry started");
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        signals.wait().await;
        #[cfg(feature = "dhat-heap")]
        crate::heap_profile::write();
        tracing::info!("shutdown requested: closing sockets, flushing, committing");
        shutdown.cancel();
    });
    let result = running.done.await;
    crate::telemetry::shutdown();
    result??;
    tracing::info!("ferry stopped");
    Ok(())
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves at the first SIGTERM or SIGINT.
    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
