//! `koji`: the command line. It wires configuration, the core and a channel or a command,
//! prints errors with their context, and exits non-zero on failure. No rules live here.

use clap::{Args, Parser, Subcommand};
use koji::commands::{self, Command};
use koji::config::{Config, Sources};
use koji::conversation::{Actor, CommandOutput, Core};
use koji::domain::SystemClock;
use koji_channel::TenantHint;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// A thread-caching allocator: the conversation tasks and the group-commit writer allocate
/// and free small strings and rows on different threads all the time, which glibc's malloc
/// serialises on its arena locks (`koji bench pipeline`: about a fifth fewer CPU µs per
/// message). Built without transparent huge pages: with them an idle `koji serve` holds
/// 44 MB resident instead of 22 MB.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "koji",
    version,
    about = "Koji: a self-hosted help-desk chat assistant"
)]
struct Cli {
    /// Configuration file (TOML); also KOJI_CONFIG. Without one, Koji runs on embedded defaults.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The tenant, where several are configured.
    #[arg(long, global = true, value_name = "ID")]
    tenant: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve every configured channel, the portal, the auth callbacks, /healthz and /metrics.
    Serve,
    /// Talk to Koji in the terminal (the console channel), one message a line.
    Chat {
        /// Speak as this person (trusted: the operator's terminal).
        #[arg(long = "as", value_name = "EMAIL")]
        as_email: Option<String>,
    },
    /// A report: sessions, users, user WHO, visitors (same flags as /koji).
    #[command(allow_hyphen_values = true)]
    Report(Words),
    /// The role setup, or one person's roles.
    #[command(allow_hyphen_values = true)]
    Roles(Words),
    /// Give a person a role.
    Grant { who: String, role: String },
    /// Take a role from a person.
    Revoke { who: String, role: String },
    /// Everything kept about a person, as JSON.
    Export { who: String },
    /// Erase a person (asks to confirm unless --yes).
    Forget {
        who: String,
        /// Do not ask: erase at once.
        #[arg(long)]
        yes: bool,
    },
    /// Role changes and erasures.
    #[command(allow_hyphen_values = true)]
    Audit(Words),
    /// The local directory of people.
    Users {
        #[command(subcommand)]
        action: UsersCmd,
    },
    /// The local knowledge base (Markdown articles in `helpdesk.kb_dir`).
    Kb {
        #[command(subcommand)]
        action: KbCmd,
    },
    /// Apply database migrations.
    Migrate,
    /// Slack app setup.
    Slack {
        #[command(subcommand)]
        action: SlackCmd,
    },
    /// Discord application setup.
    Discord {
        #[command(subcommand)]
        action: DiscordCmd,
    },
    /// Measure throughput and report latency (for developers).
    #[command(hide = true)]
    Bench(koji::bench::BenchArgs),
}

#[derive(Subcommand)]
enum UsersCmd {
    /// Seed the directory from a CSV file (header: email,name,kind,roles).
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum KbCmd {
    /// Load the articles again (every replica answers from the database at once).
    Reload,
}

#[derive(Subcommand)]
enum SlackCmd {
    /// Print a Slack app manifest (JSON) with Koji's scopes, events, /koji and URLs
    /// (from server.public_url): paste it at "Create an app → From a manifest".
    Manifest,
}

#[derive(Subcommand)]
enum DiscordCmd {
    /// Register the /koji application command (one subcommand per command word) with
    /// Discord: PUT {api_url}/applications/{application_id}/commands with the bot token.
    Register,
}

#[derive(Args)]
struct Words {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

/// `--config FILE` and `--tenant ID` may stand anywhere on the command line, also among a
/// report's own flags, which clap would otherwise take as report words: move them first.
fn hoist_global_flags(args: Vec<String>) -> Vec<String> {
    let mut globals = Vec::new();
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    if let Some(program) = it.next() {
        rest.push(program);
    }
    while let Some(a) = it.next() {
        if a == "--config" || a == "--tenant" {
            globals.push(a);
            if let Some(v) = it.next() {
                globals.push(v);
            }
        } else if a.starts_with("--config=") || a.starts_with("--tenant=") {
            globals.push(a);
        } else {
            rest.push(a);
        }
    }
    rest.splice(1..1, globals);
    rest
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(hoist_global_flags(std::env::args().collect()));
    let serve = matches!(cli.command, Cmd::Serve);
    init_tracing(serve);
    let config = match Config::load(&Sources::from_process(cli.config.clone())) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("koji: {e}");
            return ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // On SQLite every reply waits for the group-commit writer, which runs on a thread of its
    // own beside SQLite's connection thread: leave it a core rather than have the
    // conversations' workers preempt it (`koji bench pipeline` on 2 cores: 34-45k messages/s
    // with 2 workers, 41-57k with 1). TOKIO_WORKER_THREADS still decides when set.
    if config.database.url.starts_with("sqlite")
        && std::env::var_os("TOKIO_WORKER_THREADS").is_none()
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        runtime.worker_threads(cores.saturating_sub(1).max(1));
    }
    let runtime = match runtime.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("koji: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli, config))
}

fn init_tracing(serve: bool) {
    let default = if serve { "info" } else { "warn" };
    let filter = std::env::var("KOJI_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli, config: Config) -> ExitCode {
    match cli.command {
        Cmd::Serve => serve(config).await,
        Cmd::Slack {
            action: SlackCmd::Manifest,
        } => {
            let socket_mode = config
                .slack
                .as_ref()
                .and_then(|s| s.app_token.as_ref())
                .is_some_and(|t| !t.0.is_empty());
            let manifest = koji_slack::manifest(&config.server.public_url, socket_mode);
            println!(
                "{}",
                serde_json::to_string_pretty(&manifest).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Cmd::Discord {
            action: DiscordCmd::Register,
        } => discord_register(&config).await,
        Cmd::Migrate => match koji::app::open_store(&config, Arc::new(SystemClock)).await {
            Ok(store) => {
                store.close().await;
                println!("migrations applied ({})", store.backend());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Cmd::Bench(args) => match koji::bench::run(config, args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Cmd::Chat { as_email } => chat(config, cli.tenant, as_email).await,
        Cmd::Report(w) => {
            let Some(name) = w.words.first() else {
                eprintln!("koji: which report? sessions, users, user WHO or visitors");
                return ExitCode::from(2);
            };
            if !["sessions", "users", "user", "visitors"].contains(&name.as_str()) {
                eprintln!(
                    "koji: unknown report `{name}` (reports: sessions, users, user WHO, visitors)"
                );
                return ExitCode::from(2);
            }
            command(config, cli.tenant, w.words).await
        }
        Cmd::Roles(w) => command(config, cli.tenant, prefixed("roles", w.words)).await,
        Cmd::Audit(w) => command(config, cli.tenant, prefixed("audit", w.words)).await,
        Cmd::Grant { who, role } => {
            command(config, cli.tenant, vec!["grant".into(), who, role]).await
        }
        Cmd::Revoke { who, role } => {
            command(config, cli.tenant, vec!["revoke".into(), who, role]).await
        }
        Cmd::Export { who } => command(config, cli.tenant, vec!["export".into(), who]).await,
        Cmd::Forget { who, yes } => {
            if !yes
                && !confirm(&format!(
                    "Erase everything Koji keeps about {who}? This cannot be undone. Type yes: "
                ))
            {
                eprintln!(
                    "koji: not erased (not confirmed); add --yes to confirm without being asked"
                );
                return ExitCode::FAILURE;
            }
            command(config, cli.tenant, vec!["forget".into(), who]).await
        }
        Cmd::Users {
            action: UsersCmd::Import { file },
        } => import(config, cli.tenant, file).await,
        Cmd::Kb {
            action: KbCmd::Reload,
        } => kb_reload(config).await,
    }
}

async fn discord_register(config: &Config) -> ExitCode {
    let discord = config.discord.as_ref();
    let Some(app) = discord
        .and_then(|d| d.application_id.as_deref())
        .filter(|a| !a.trim().is_empty())
    else {
        eprintln!(
            "koji: discord.application_id is not set (the [discord] section of the configuration, or KOJI_DISCORD__APPLICATION_ID)"
        );
        return ExitCode::from(2);
    };
    let Some(token) = discord
        .and_then(|d| d.bot_token.as_ref())
        .map(|t| t.0.as_str())
        .filter(|t| !t.trim().is_empty())
    else {
        eprintln!(
            "koji: discord.bot_token is not set (the [discord] section of the configuration, or KOJI_DISCORD__BOT_TOKEN)"
        );
        return ExitCode::from(2);
    };
    let api = koji_discord::api::Api::new(discord.and_then(|d| d.api_url.as_deref()));
    let definition = koji_discord::command::definition();
    match api.register(token, app, &definition).await {
        Ok(_) => {
            let subs: Vec<&str> = definition[0]["options"]
                .as_array()
                .map(|o| o.iter().filter_map(|s| s["name"].as_str()).collect())
                .unwrap_or_default();
            println!(
                "registered /koji for Discord application {app} ({} subcommands: {})",
                subs.len(),
                subs.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("koji: Discord did not register /koji: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn kb_reload(config: Config) -> ExitCode {
    let docs = match koji::helpdesk::kb::load(config.helpdesk.kb_dir.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("koji: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match koji::app::open_store(&config, Arc::new(SystemClock)).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let code = match store.sync_kb(&docs).await {
        Ok(s) => {
            println!(
                "knowledge base reloaded from {}: {} articles ({} added, {} updated, {} removed, {} unchanged)",
                config
                    .helpdesk
                    .kb_dir
                    .as_deref()
                    .unwrap_or("the built-in examples"),
                docs.len(),
                s.added,
                s.updated,
                s.removed,
                s.unchanged
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    };
    store.close().await;
    code
}

/// Asks on the terminal (or reads one line from a pipe); true for `yes`.
fn confirm(question: &str) -> bool {
    eprint!("{question}");
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "yes" | "y")
}

async fn import(config: Config, tenant: Option<String>, file: PathBuf) -> ExitCode {
    let (core, writer) = match start(config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let code = match core.cli_tenant(tenant.as_deref()) {
        Err(e) => {
            eprintln!("koji: {e}");
            ExitCode::from(2)
        }
        Ok(t) => match koji::directory::import_csv(&core.store, t, &file).await {
            Ok(r) => {
                println!(
                    "imported {}: {} new, {} updated, {} unchanged, {} refused",
                    file.display(),
                    r.created,
                    r.updated,
                    r.unchanged,
                    r.refused.len()
                );
                for (line, why) in &r.refused {
                    eprintln!("koji: line {line} refused: {why}");
                }
                if r.refused.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => fail(e),
        },
    };
    stop(core, writer).await;
    code
}

fn prefixed(word: &str, rest: Vec<String>) -> Vec<String> {
    std::iter::once(word.to_string()).chain(rest).collect()
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("koji: {e}");
    ExitCode::FAILURE
}

async fn serve(config: Config) -> ExitCode {
    let app = match koji::App::build(config).await {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    match app.run_until_stopped(koji::app::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn start(config: Config) -> Result<(Arc<Core>, tokio::task::JoinHandle<()>), ExitCode> {
    koji::app::start_core(config, Arc::new(SystemClock))
        .await
        .map_err(fail)
}

async fn stop(core: Arc<Core>, writer: tokio::task::JoinHandle<()>) {
    let _ = core.flush().await;
    let store = core.store.clone();
    drop(core);
    let _ = writer.await;
    store.close().await;
}

async fn chat(config: Config, tenant: Option<String>, as_email: Option<String>) -> ExitCode {
    let speaker = match koji::console::speaker(as_email.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("koji: --as: {e}");
            return ExitCode::from(2);
        }
    };
    let (core, writer) = match start(config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let hint = match core.cli_tenant(tenant.as_deref()) {
        Ok(t) => TenantHint::Id(t.config.id.clone()),
        Err(e) => {
            eprintln!("koji: {e}");
            return ExitCode::from(2);
        }
    };
    let interactive = std::io::stdin().is_terminal();
    let input = tokio::io::BufReader::with_capacity(64 * 1024, tokio::io::stdin());
    let result = koji::console::run(
        core.clone(),
        hint,
        speaker,
        input,
        tokio::io::stdout(),
        interactive,
    )
    .await;
    stop(core, writer).await;
    match result {
        Ok(s) if s.failed == 0 => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("koji: {} message(s) could not be recorded", s.failed);
            ExitCode::FAILURE
        }
        Err(e) => fail(e),
    }
}

/// Runs an admin command as the operator and prints its full output.
async fn command(config: Config, tenant: Option<String>, words: Vec<String>) -> ExitCode {
    let cmd: Command = match commands::parse_words(&words) {
        Ok(c) => c,
        Err(e) => {
            let text = e.to_string().replace("/koji ", "koji ");
            eprintln!("koji: {text}");
            return ExitCode::from(2);
        }
    };
    let (core, writer) = match start(config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let code = match core.cli_tenant(tenant.as_deref()) {
        Err(e) => {
            eprintln!("koji: {e}");
            ExitCode::from(2)
        }
        Ok(t) => match core
            .run_command(t, &Actor::Operator, koji_channel::Channel::Console, cmd)
            .await
        {
            CommandOutput::Report(report, format) => {
                let text = report.render(format);
                println!("{}", text.trim_end());
                ExitCode::SUCCESS
            }
            CommandOutput::Text(t)
            | CommandOutput::Audit(t)
            | CommandOutput::Confirm { text: t } => {
                println!("{}", t.trim_end());
                ExitCode::SUCCESS
            }
            CommandOutput::Export(v) => {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                ExitCode::SUCCESS
            }
            CommandOutput::Usage(t) => {
                eprintln!("koji: {t}");
                ExitCode::from(2)
            }
            CommandOutput::Refused(t) | CommandOutput::NotFound(t) => {
                eprintln!("koji: {t}");
                ExitCode::FAILURE
            }
        },
    };
    stop(core, writer).await;
    code
}
