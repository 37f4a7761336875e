//! The `sluice` command line.

mod commands;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use commands::ledger::Format;
use sluice::output::{Output, warn};
use sluice::report::printable;
use sluice::retry_job::Request;

/// jemalloc rather than glibc's malloc: sled's flusher thread frees what the workers
/// allocated, and glibc's arena locks turned a quarter of the ledger's CPU time into futex
/// waits. mimalloc was as fast but kept up to 300 MiB at peak (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Delivers records to SaaS destinations through sandboxed WebAssembly connectors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress output.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Log format on stderr; filter with RUST_LOG (for example `RUST_LOG=sluice=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// What `run` (and `plan`, which says what it would do) covers.
#[derive(clap::Args)]
struct Scope {
    /// The config file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Only this sync.
    #[arg(long)]
    sync: Option<String>,
    /// Print one JSON object per sync instead of the report.
    #[arg(long)]
    json: bool,
    /// Send every record, even those the destination confirmed with the same data
    /// (records held for a person stay held).
    #[arg(long)]
    full_resync: bool,
    /// Run one partition of the keys, `I/N` (0 <= I < N): the records whose key hashes to
    /// partition I of N, as a worker of a pool runs it.
    #[arg(long, value_name = "I/N")]
    partition: Option<sluice::source::partition::Partition>,
    /// A mirror sync may delete up to N records in this run, above its max_deletes.
    #[arg(long, value_name = "N")]
    allow_deletes: Option<u64>,
}

impl Scope {
    fn options(&self) -> sluice::sync::RunOptions {
        sluice::sync::RunOptions {
            full_resync: self.full_resync,
            partition: self.partition,
            allow_deletes: self.allow_deletes,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Runs each sync of a config once (or only the one named) and prints what happened.
    Run {
        #[command(flatten)]
        scope: Scope,
    },
    /// Shows what `sluice run` would do (records to insert, update, delete, skip or hold,
    /// with examples) by reading the source and the ledger; sends and writes nothing.
    Plan {
        #[command(flatten)]
        scope: Scope,
    },
    /// Retries failed records from the ledger, with their stored payloads.
    Retry {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        sync: String,
        /// Only records whose failures began within this window, from 1m to 3650d
        /// [default: the sync's retry_job.window, 7d].
        #[arg(long, value_parser = parse_window)]
        window: Option<std::time::Duration>,
        /// At most this many records, oldest failure first [default: the sync's
        /// retry_job.max_records, 50000].
        #[arg(long)]
        limit: Option<usize>,
        /// Only records failed with this code (repeatable); names non-retryable codes too.
        #[arg(long = "code")]
        codes: Vec<String>,
        /// Exactly this failed record (repeatable), whatever its failure status (pending,
        /// rejected, permanent, resolved), code or age. A delivered record has nothing to
        /// retry: it is refused (exit 1), and a key not in the ledger is not found (exit 4).
        #[arg(long = "key")]
        keys: Vec<String>,
        /// Retry permanent records too.
        #[arg(long)]
        include_permanent: bool,
        #[arg(long)]
        json: bool,
    },
    /// Runs the retry job, and syncs with a schedule, at their times (UTC) until SIGTERM,
    /// exporting Prometheus metrics.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// Where Prometheus scrapes `/metrics`.
        #[arg(long, default_value = "127.0.0.1:9464")]
        metrics_addr: std::net::SocketAddr,
        /// Run every sync once at start, before waiting for the schedule (with the state
        /// in PostgreSQL: queue a run of each sync that has none queued or running).
        #[arg(long)]
        now: bool,
        /// With the state in PostgreSQL, how long a worker's lease on its work lasts
        /// without renewal: how soon another worker takes over the work of a dead one.
        #[arg(long, default_value = "30s", value_parser = parse_lease)]
        lease_timeout: std::time::Duration,
        /// How long requests in flight may finish after SIGTERM before they are abandoned.
        #[arg(long, default_value = "10s", value_parser = parse_grace)]
        grace: std::time::Duration,
        /// Serve the operators' console's API here (for example 127.0.0.1:8080); needs a
        /// [console] table naming its token's variable. Off by default.
        #[arg(long)]
        console_addr: Option<std::net::SocketAddr>,
    },
    /// Queues a run of each sync (or one) for the pool of `sluice serve` workers that
    /// share the config's state database; a sync with a run queued or running gets none.
    Enqueue {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        sync: Option<String>,
    },
    /// Shows the requests of recent runs and what the destination answered, newest first.
    Inspect {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        sync: String,
        /// Only this run.
        #[arg(long)]
        run: Option<String>,
        /// Only responses with this HTTP status (0: no response).
        #[arg(long)]
        status: Option<u16>,
        /// At most this many exchanges, from 1.
        #[arg(long, default_value_t = 20, value_parser = at_least_one())]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Lists past runs with their summaries, newest first.
    Runs {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        sync: Option<String>,
        /// At most this many runs, from 1.
        #[arg(long, default_value_t = 50, value_parser = at_least_one())]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Shows and fixes what the ledger holds.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Tools for connector authors.
    Connector {
        #[command(subcommand)]
        command: ConnectorCommand,
    },
    /// Runs a real sync of example accounts through the bundled Salesforce connector into
    /// a simulated Salesforce that fails in realistic ways. Needs no set-up.
    Demo {
        /// Print the JSON summary instead of the report.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Checks that a component implements the destination-connector world and keeps the
    /// contract on canned responses; exits 0 only when it is conformant.
    Check {
        /// The component (.wasm), or `builtin:NAME` for a bundled connector.
        file: PathBuf,
        /// JSONL records to check with instead of the built-in sample (a connector that
        /// validates its records may refuse the sample).
        #[arg(long, value_name = "FILE")]
        records: Option<PathBuf>,
        /// The field of each `--records` object that holds its key.
        #[arg(long, default_value = "id")]
        key: String,
        /// A setting for `configure`, as KEY=VALUE (repeatable).
        #[arg(long = "settings", short = 's', value_name = "KEY=VALUE", value_parser = parse_setting)]
        settings: Vec<(String, String)>,
        /// A host absolute request URLs may name (repeatable), as in `allowed_hosts`.
        #[arg(long = "allowed-host")]
        allowed_hosts: Vec<String>,
        /// Memory limit per instance, in bytes or with a unit (64MiB).
        #[arg(long, value_parser = parse_size)]
        memory_limit: Option<u64>,
        /// Time limit per call (1s, 250ms), from 1ms to 10m.
        #[arg(long, value_parser = parse_call_timeout)]
        call_timeout: Option<std::time::Duration>,
    },
}

/// `--call-timeout`: a duration within the range `call_timeout` accepts.
fn parse_call_timeout(text: &str) -> Result<std::time::Duration, String> {
    duration_within(
        text,
        "--call-timeout",
        sluice::config::CALL_TIMEOUT_RANGE,
        "1s",
    )
}

/// `--lease-timeout`: from a second to an hour.
fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    duration_within(
        text,
        "--lease-timeout",
        sluice::config::LEASE_TIMEOUT_RANGE,
        "30s",
    )
}

/// `--grace`: from a second to an hour.
fn parse_grace(text: &str) -> Result<std::time::Duration, String> {
    duration_within(text, "--grace", sluice::config::GRACE_RANGE, "10s")
}

/// `--window`: a duration within the range `retry_job.window` accepts.
fn parse_window(text: &str) -> Result<std::time::Duration, String> {
    duration_within(text, "--window", sluice::config::RETRY_WINDOW_RANGE, "7d")
}

/// A duration flag's value, within `range`; the error names the flag and an `example`.
fn duration_within(
    text: &str,
    flag: &str,
    range: sluice::config::DurationRange,
    example: &str,
) -> Result<std::time::Duration, String> {
    let value = humantime::parse_duration(text).map_err(|err| {
        format!("`{text}` is not a duration ({err}); expected for example {example}")
    })?;
    range
        .check(flag, value, text)
        .map_err(|err| err.to_string())
}

/// A count of things to show: 0 would show nothing, which nobody asks for on purpose, so
/// it is refused as a usage error rather than taken (the lists once showed one for it).
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// `--status`: a value clap checks, so that a wrong one is a usage error (exit 2) like
/// any other flag's, not a failure of the command.
fn parse_status(text: &str) -> Result<sluice::ledger::Status, String> {
    sluice::ledger::Status::parse(text).map_err(|err| err.to_string())
}

/// `--settings KEY=VALUE`, checked by clap (a wrong one is a usage error, exit 2).
fn parse_setting(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not a setting; expected KEY=VALUE"))?;
    Ok((key.trim().to_string(), value.to_string()))
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("`{text}` is not a size; expected for example 64MiB"))
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Lists records: key, status, code, message, fields, attempts, first failure, last attempt.
    List {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        sync: String,
        /// pending, delivered, rejected, permanent or resolved.
        #[arg(long, value_parser = parse_status)]
        status: Option<sluice::ledger::Status>,
        #[arg(long)]
        code: Option<String>,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV. A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
        /// return is prefixed with `'`, so that a spreadsheet shows it as text rather than
        /// running it as a formula (CSV injection).
        #[arg(long)]
        csv: bool,
    },
    /// Shows everything the ledger holds about one record.
    Show {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        sync: String,
        key: String,
    },
    /// Counts records by status and by failure code.
    Stats {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        sync: String,
        #[arg(long)]
        json: bool,
    },
    /// Marks a record handled without sending it, keeping who and why.
    Resolve {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        sync: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        why: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout; clap ignores a failure to write them, so a pipe or
        // file gets them through `Output` like any other command's output (a terminal gets
        // clap's colours).
        Err(err) if !err.use_stderr() && !std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            let mut out = Output::stdout();
            let _ = write!(out, "{}", err.render());
            return finished(out, ExitCode::SUCCESS);
        }
        Err(err) => err.exit(),
    };
    let default_log = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    init_logging(default_log, cli.log_format);
    // The demo sets its own (simulated) credentials in the environment, which must happen
    // before any other thread exists.
    if let Command::Demo { .. } = cli.command {
        sluice::demo::prepare_environment();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            warn(format_args!("error: cannot start the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    // Every command prints through `out`: a reader that closes the pipe ends the output
    // quietly, and any other write failure ends the command with an error, never a panic.
    let mut out = Output::stdout();
    let json = cli.command.prints_json();
    let code = match runtime.block_on(dispatch(cli.command, cli.quiet, &mut out)) {
        Ok(code) => code,
        Err(err) => {
            // People read stderr; with --json, a script reads the error object on stdout
            // (docs/cli.md), and both branch on the exit code.
            warn(format_args!("error: {}", printable(&format!("{err:#}"))));
            if json {
                let _ = writeln!(out, "{}", sluice::concern::Concern::json(&err));
            }
            ExitCode::from(sluice::concern::Concern::of(&err).kind.exit_code())
        }
    };
    finished(out, code)
}

impl Command {
    /// Whether the command prints JSON (`--json`, or `ledger show`, which always does).
    fn prints_json(&self) -> bool {
        match self {
            Command::Run { scope } | Command::Plan { scope } => scope.json,
            Command::Retry { json, .. }
            | Command::Inspect { json, .. }
            | Command::Runs { json, .. }
            | Command::Demo { json } => *json,
            Command::Ledger { command } => match command {
                LedgerCommand::List { json, .. } | LedgerCommand::Stats { json, .. } => *json,
                LedgerCommand::Show { .. } => true,
                LedgerCommand::Resolve { .. } => false,
            },
            Command::Serve { .. } | Command::Enqueue { .. } | Command::Connector { .. } => false,
        }
    }
}

/// `code`, unless what was printed could not all be written.
fn finished(out: Output, code: ExitCode) -> ExitCode {
    match out.finish() {
        Ok(()) => code,
        Err(err) => {
            warn(format_args!("error: {err:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, quiet: bool, out: &mut Output) -> Result<ExitCode> {
    match command {
        Command::Run { scope } => {
            let how = commands::run::How {
                json: scope.json,
                progress: commands::progress::Mode::detect(quiet),
                options: scope.options(),
            };
            commands::run::run(&scope.config, scope.sync.as_deref(), how, out).await
        }
        Command::Inspect {
            config,
            sync,
            run,
            status,
            limit,
            json,
        } => commands::inspect::inspect(
            &config,
            commands::inspect::InspectArgs {
                sync: &sync,
                run: run.as_deref(),
                status,
                limit,
                json,
            },
            out,
        ),
        Command::Runs {
            config,
            sync,
            limit,
            json,
        } => commands::inspect::runs(&config, sync.as_deref(), limit, json, out),
        Command::Retry {
            config,
            sync,
            window,
            limit,
            codes,
            keys,
            include_permanent,
            json,
        } => {
            let request = Request {
                window,
                limit,
                codes,
                keys,
                include_permanent,
            };
            commands::retry::run(&config, &sync, request, json, out).await
        }
        Command::Serve {
            config,
            metrics_addr,
            now,
            lease_timeout,
            grace,
            console_addr,
        } => {
            let how = commands::serve::How {
                metrics_addr,
                now,
                lease_timeout,
                grace,
                console_addr,
            };
            commands::serve::run(&config, how).await
        }
        Command::Plan { scope } => {
            let (config, sync) = (&scope.config, scope.sync.as_deref());
            commands::plan::plan(config, sync, scope.options(), scope.json, out).await
        }
        Command::Enqueue { config, sync } => commands::serve::enqueue(&config, sync.as_deref()),
        Command::Ledger { command } => match command {
            LedgerCommand::List {
                config,
                sync,
                status,
                code,
                json,
                csv,
            } => {
                let format = if json {
                    Format::Json
                } else if csv {
                    Format::Csv
                } else {
                    Format::Table
                };
                commands::ledger::list(&config, &sync, status, code.as_deref(), format, out)
            }
            LedgerCommand::Show { config, sync, key } => {
                commands::ledger::show(&config, &sync, &key, out)
            }
            LedgerCommand::Stats { config, sync, json } => {
                commands::ledger::stats(&config, &sync, json, out)
            }
            LedgerCommand::Resolve {
                config,
                sync,
                key,
                by,
                why,
            } => commands::ledger::resolve(&config, &sync, (&key, &by, &why), out),
        },
        Command::Connector { command } => match command {
            ConnectorCommand::Check {
                file,
                records,
                key,
                settings,
                allowed_hosts,
                memory_limit,
                call_timeout,
            } => commands::connector::check(
                commands::connector::CheckArgs {
                    file: &file,
                    records: records.as_deref().map(|path| (path, key.as_str())),
                    settings: &settings,
                    allowed_hosts,
                    memory_limit,
                    call_timeout,
                },
                out,
            ),
        },
        Command::Demo { json } => sluice::demo::run(json, out).await,
    }
}

fn init_logging(default: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // sled's own log lines (a damaged file's checksum, its guess at an old version) only
    // repeat, less clearly, what its errors say, and every one of those reaches the
    // operator as an error naming the ledger; `RUST_LOG=sled=warn` shows them.
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},sled=off")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Scrubbed of every credential once more: a line may quote what a connector or a
        // destination said.
        .with_writer(|| sluice::secrets::live::ScrubbedStderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
