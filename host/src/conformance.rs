//! The conformance check behind `sluice connector check`: does a component implement the
//! `destination-connector` world, and does it keep the contract?
//!
//! It loads the component as the host would, configures it with the given settings, runs a
//! small sample batch through `precheck` and `build-request`, and then a suite of canned
//! responses through `classify`: per-record 2xx bodies, a whole-batch 400, 429 with
//! `Retry-After` in seconds and as an HTTP-date, 503, 401, 500, a malformed body, an empty
//! body and a body of 10 MiB. Every step says what the connector decided. Contract
//! violations (a wrong world or version, an import the sandbox does not provide, settings
//! refused, limits of zero, a per-record list of the wrong length, a malformed request, a
//! request to a host outside `allowed_hosts`, a trap, a timeout, memory over the limit)
//! make the component non-conformant, each reported by name with what to fix. Warnings
//! (a 429 that is not read as a rate limit, say) point at likely mistakes but do not.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::config::HostPattern;
use crate::sandbox::{
    Connector, ConnectorInstance, GuestError, GuestErrorKind, HttpRequest, HttpResponse,
    PrecheckOutcome, RecordOutcome, Runtime, SUPPORTED_VERSIONS, SandboxLimits, SourceRecord,
    Verdict, Wait, WorldError,
};
use crate::transport::{Refusal, Transport};

/// The base URL relative request paths are resolved against in the check.
const BASE_URL: &str = "https://destination.example";

/// When the canned responses say they were received: 2023-11-14T22:13:20Z.
const RECEIVED_AT_MS: u64 = 1_700_000_000_000;

/// A broken rule of the contract, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Violation {
    /// The file is not a WebAssembly component.
    NotAComponent,
    /// It does not export `sluice:connector/destination`.
    World,
    /// It exports a version of the world this host does not support.
    WorldVersion,
    /// It imports something the sandbox does not provide.
    Imports,
    /// `configure` refused the settings given.
    ConfigureRefused,
    /// `configure` stated batch limits of zero.
    Limits,
    /// `precheck` or a per-record verdict answered for another number of records.
    WrongLength,
    /// `build-request` built a request the host will not send (a bad method, URL or header).
    MalformedRequest,
    /// `build-request` addressed an absolute URL outside `allowed_hosts`.
    ForbiddenHost,
    /// A call trapped (a panic, an uncaught exception, `unreachable`).
    Trap,
    /// A call ran past its time limit.
    Timeout,
    /// The instance grew its memory past its limit.
    MemoryLimit,
}

impl Violation {
    /// The name the report gives it.
    pub fn name(self) -> &'static str {
        match self {
            Violation::NotAComponent => "not-a-component",
            Violation::World => "world",
            Violation::WorldVersion => "world-version",
            Violation::Imports => "imports",
            Violation::ConfigureRefused => "configure-refused",
            Violation::Limits => "limits",
            Violation::WrongLength => "wrong-length",
            Violation::MalformedRequest => "malformed-request",
            Violation::ForbiddenHost => "forbidden-host",
            Violation::Trap => "trap",
            Violation::Timeout => "timeout",
            Violation::MemoryLimit => "memory-limit",
        }
    }

    /// What an author does about it.
    pub fn advice(self) -> &'static str {
        match self {
            Violation::NotAComponent => {
                "build a component (wasm32-wasip2, componentize-py, componentize-js), not a core module"
            }
            Violation::World => {
                "build against the `destination-connector` world of wit/ and export `destination`"
            }
            Violation::WorldVersion => {
                "build against a version of sluice:connector this Sluice supports"
            }
            Violation::Imports => {
                "import only the world's `host` interface and WASI 0.2 (no wasi:http, no sockets of your own)"
            }
            Violation::ConfigureRefused => {
                "pass the settings a sync would give (--settings key=value), or fix `configure`"
            }
            Violation::Limits => "state limits of at least 1 record and 1 byte in `configure`",
            Violation::WrongLength => {
                "answer exactly one outcome per record, in the order of the batch (precheck) or of `keys` (classify)"
            }
            Violation::MalformedRequest => {
                "use GET, POST, PUT, PATCH or DELETE, a path relative to base_url or an http(s) URL, and valid header names and values"
            }
            Violation::ForbiddenHost => {
                "address paths relative to base_url, or document the host operators must add to `allowed_hosts`"
            }
            Violation::Trap => {
                "never trap: turn an unexpected input into a failure (`transient` or `fatal` in classify, an error in build-request)"
            }
            Violation::Timeout => {
                "finish every call well within `call_timeout` (default 1s): no loops without a bound"
            }
            Violation::MemoryLimit => {
                "stay within `memory_limit` (default 64 MiB): do not buffer without bound; refuse bodies too large to read"
            }
        }
    }

    fn of(error: &GuestError) -> Self {
        match error.kind {
            GuestErrorKind::Timeout => Violation::Timeout,
            GuestErrorKind::MemoryLimit => Violation::MemoryLimit,
            GuestErrorKind::Contract(_) => Violation::WrongLength,
            GuestErrorKind::Trap(_) | GuestErrorKind::Unusable => Violation::Trap,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one step of the check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Allowed by the contract, but likely a mistake.
    Warning,
    /// Not run, because an earlier step failed or the sample gave it nothing to do.
    Skipped,
    Violation(Violation),
    /// The checker itself could not run the step (not the connector's fault).
    Error,
}

/// One step: a call into the connector, or one canned response through `classify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What was checked: `configure`, `classify: 429 with Retry-After: 30`, ...
    pub name: String,
    pub status: Status,
    /// What the connector decided, or what is wrong.
    pub detail: String,
}

/// The result of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The version of `sluice:connector` the component was built against, when found.
    pub version: Option<String>,
    /// The limits `configure` stated: records and bytes a batch.
    pub limits: Option<(u32, u64)>,
    pub steps: Vec<Step>,
}

impl Report {
    /// True when no step found a contract violation (warnings allowed).
    pub fn conformant(&self) -> bool {
        self.steps
            .iter()
            .all(|s| !matches!(s.status, Status::Violation(_) | Status::Error))
    }

    /// Every violation found, in the order of the steps, each once.
    pub fn violations(&self) -> Vec<Violation> {
        let mut found = Vec::new();
        for step in &self.steps {
            if let Status::Violation(v) = step.status
                && !found.contains(&v)
            {
                found.push(v);
            }
        }
        found
    }

    pub fn warnings(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.status == Status::Warning)
            .count()
    }

    fn push(&mut self, name: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.steps.push(Step {
            name: name.into(),
            status,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .steps
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0);
        for step in &self.steps {
            let label = match &step.status {
                Status::Ok => "ok".to_string(),
                Status::Warning => "warn".to_string(),
                Status::Skipped => "skip".to_string(),
                Status::Violation(_) | Status::Error => "FAIL".to_string(),
            };
            let detail = match &step.status {
                Status::Violation(v) => format!("[{v}] {}", step.detail),
                _ => step.detail.clone(),
            };
            writeln!(f, "{label:<4}  {:<width$}  {detail}", step.name)?;
        }
        writeln!(f)?;
        let warnings = match self.warnings() {
            0 => String::new(),
            1 => " (1 warning)".to_string(),
            n => format!(" ({n} warnings)"),
        };
        if self.conformant() {
            let version = self.version.as_deref().unwrap_or("?");
            writeln!(
                f,
                "conformant: implements sluice:connector/destination@{version} and kept the contract in every step{warnings}"
            )
        } else {
            let violations = self.violations();
            let names: Vec<&str> = violations.iter().map(|v| v.name()).collect();
            writeln!(
                f,
                "NOT conformant: {}{warnings}",
                if names.is_empty() {
                    "the check could not run".to_string()
                } else {
                    names.join(", ")
                }
            )?;
            for v in violations {
                writeln!(f, "  {v}: {}", v.advice())?;
            }
            Ok(())
        }
    }
}

/// How to run a check.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts an absolute request URL may name besides the base URL, as in a connector's
    /// `allowed_hosts` (`host`, `host:port`, `*.domain`).
    pub allowed_hosts: Vec<String>,
    /// The memory and call-time limits the component runs under.
    pub limits: SandboxLimits,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// What the report and error messages call the connector (the file's name, say).
    pub name: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allowed_hosts: Vec::new(),
            limits: SandboxLimits::default(),
            cache_dir: None,
            name: "connector".to_string(),
        }
    }
}

/// Checks the component `wasm`, configured with `settings`, under the default limits and
/// with no allowed hosts besides the base URL.
pub fn check(wasm: &[u8], settings: &[(String, String)]) -> Report {
    check_with(wasm, settings, &Options::default())
}

/// Checks the component `wasm`, configured with `settings`.
pub fn check_with(wasm: &[u8], settings: &[(String, String)], options: &Options) -> Report {
    let mut report = Report::default();
    let mut hosts = Vec::new();
    for host in &options.allowed_hosts {
        match HostPattern::parse(host) {
            Ok(pattern) => hosts.push(pattern),
            Err(why) => {
                report.push("allowed hosts", Status::Error, why);
                return report;
            }
        }
    }
    let runtime = match Runtime::new(options.cache_dir.clone()) {
        Ok(runtime) => runtime,
        Err(err) => {
            report.push("runtime", Status::Error, format!("{err:#}"));
            return report;
        }
    };
    let Some(connector) = load(&runtime, &options.name, wasm, options.limits, &mut report) else {
        return report;
    };
    let mut session = Session {
        connector,
        settings: settings.to_vec(),
        instance: None,
    };
    if !configure(&mut session, &mut report) {
        return report;
    }
    unknown_setting(&session, &mut report);
    let Some(batch) = precheck(&mut session, &mut report) else {
        return report;
    };
    let transport = Transport::new(
        reqwest::Client::new(),
        reqwest::Url::parse(BASE_URL).expect("a valid URL"),
        hosts,
        Duration::from_secs(30),
        usize::MAX,
    );
    build_request(&mut session, &batch, &transport, &mut report);
    let keys: Vec<String> = batch.iter().map(|r| r.key.clone()).collect();
    for case in cases(&keys) {
        classify(&mut session, &keys, case, &mut report);
    }
    report
}

/// Compiles, checks the world and links; `None` when the component cannot be loaded.
fn load(
    runtime: &Runtime,
    name: &str,
    wasm: &[u8],
    limits: SandboxLimits,
    report: &mut Report,
) -> Option<Connector> {
    let started = Instant::now();
    let component = match runtime.compile(name, wasm) {
        Ok(component) => component,
        Err(err) => {
            report.push(
                "load",
                Status::Violation(Violation::NotAComponent),
                format!("{:#}", err.root_cause()),
            );
            return None;
        }
    };
    report.push(
        "load",
        Status::Ok,
        format!(
            "a component of {}, compiled in {}",
            bytesize::ByteSize(wasm.len() as u64).display().si(),
            millis(started.elapsed())
        ),
    );
    let version = match runtime.world_version(&component) {
        Ok(version) => {
            report.push(
                "world",
                Status::Ok,
                format!(
                    "exports sluice:connector/destination@{version} (this Sluice supports {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            );
            report.version = Some(version.clone());
            version
        }
        Err(err) => {
            let violation = match err {
                WorldError::NotExported { .. } => Violation::World,
                WorldError::Unsupported { .. } => Violation::WorldVersion,
            };
            report.push("world", Status::Violation(violation), err.to_string());
            return None;
        }
    };
    match runtime.link(name, &version, &component, limits) {
        Ok(connector) => {
            report.push(
                "imports",
                Status::Ok,
                "everything it imports, the sandbox provides",
            );
            Some(connector)
        }
        Err(err) => {
            let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
            report.push(
                "imports",
                Status::Violation(Violation::Imports),
                format!(
                    "the sandbox does not provide an import: {}",
                    causes.join(": ")
                ),
            );
            None
        }
    }
}

/// The connector and a configured instance of it. After a failed call an instance is
/// never called again; the next step gets a fresh one.
struct Session {
    connector: Connector,
    settings: Vec<(String, String)>,
    instance: Option<ConnectorInstance>,
}

impl Session {
    /// A configured instance: the one in hand, or a new one.
    fn instance(&mut self) -> Result<&mut ConnectorInstance, String> {
        if self.instance.is_none() {
            let mut instance = self
                .connector
                .instantiate("check")
                .map_err(|e| e.to_string())?;
            match instance.configure(&self.settings) {
                Ok(Ok(_)) => self.instance = Some(instance),
                Ok(Err(f)) => return Err(format!("configure refused: {}: {}", f.code, f.message)),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(self.instance.as_mut().expect("just set"))
    }

    /// Runs one call; a failed call drops the instance.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut ConnectorInstance) -> Result<R, GuestError>,
    ) -> Result<Result<R, GuestError>, String> {
        let instance = self.instance()?;
        let result = f(instance);
        if let Err(e) = &result
            && !matches!(e.kind, GuestErrorKind::Contract(_))
        {
            self.instance = None;
        }
        Ok(result)
    }
}

/// Instantiates and configures; false when nothing more can be checked.
fn configure(session: &mut Session, report: &mut Report) -> bool {
    let started = Instant::now();
    let mut instance = match session.connector.instantiate("check") {
        Ok(instance) => instance,
        Err(err) => {
            report.push(
                "instantiate",
                Status::Violation(Violation::of(&err)),
                describe(&err),
            );
            return false;
        }
    };
    report.push(
        "instantiate",
        Status::Ok,
        format!("a fresh instance in {}", millis(started.elapsed())),
    );
    match instance.configure(&session.settings) {
        Err(err) => {
            report.push(
                "configure",
                Status::Violation(Violation::of(&err)),
                describe(&err),
            );
            false
        }
        Ok(Err(f)) => {
            let given = if session.settings.is_empty() {
                "no settings".to_string()
            } else {
                session
                    .settings
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            report.push(
                "configure",
                Status::Violation(Violation::ConfigureRefused),
                format!("refused {given}: {}: {}", f.code, f.message),
            );
            false
        }
        Ok(Ok(limits)) => {
            let (records, bytes) = (limits.max_batch_records, limits.max_batch_bytes);
            report.limits = Some((records, bytes));
            let stated = format!("at most {records} records and {bytes} bytes of payloads a batch");
            if records == 0 || bytes == 0 {
                report.push(
                    "configure",
                    Status::Violation(Violation::Limits),
                    format!("{stated}: both must be at least 1"),
                );
                return false;
            }
            if records > 100_000 || bytes > 1 << 30 {
                report.push(
                    "configure",
                    Status::Warning,
                    format!("{stated}: requests that large are rarely accepted; state the destination's own limits"),
                );
            } else {
                report.push("configure", Status::Ok, stated);
            }
            session.instance = Some(instance);
            true
        }
    }
}

/// A misspelt optional setting should be refused, not silently ignored.
fn unknown_setting(session: &Session, report: &mut Report) {
    const KEY: &str = "sluice_check_unknown_setting";
    let mut settings = session.settings.clone();
    settings.push((KEY.into(), "1".into()));
    let name = "configure (an unknown setting)";
    let answer = session
        .connector
        .instantiate("check")
        .and_then(|mut i| i.configure(&settings));
    match answer {
        Ok(Err(f)) => report.push(name, Status::Ok, format!("refused: {}: {}", f.code, f.message)),
        Ok(Ok(_)) => report.push(
            name,
            Status::Warning,
            format!("accepted `{KEY}`: an operator's misspelt setting would go unnoticed; refuse settings you do not know"),
        ),
        Err(err) => report.push(name, Status::Violation(Violation::of(&err)), describe(&err)),
    }
}

/// A sample batch, within the stated limits.
fn sample(limit: u32) -> Vec<SourceRecord> {
    (1..=3.min(limit.max(1)))
        .map(|i| {
            let key = format!("check{i}@example.com");
            let payload = format!(
                r#"{{"id": "{key}", "email": "{key}", "name": "Check {i}", "firstname": "Check", "lastname": "Record {i}", "amount": {i}00.50, "active": true, "ParentCrmId": "P1"}}"#
            );
            SourceRecord { key, payload }
        })
        .collect()
}

/// Runs the sample through `precheck`; the records left to send (or all of them, when
/// precheck settled every one), or `None` when nothing more can be checked.
fn precheck(session: &mut Session, report: &mut Report) -> Option<Vec<SourceRecord>> {
    let batch = sample(report.limits.map_or(3, |(records, _)| records));
    let answer = match session.call(|i| i.precheck(&batch)) {
        Ok(answer) => answer,
        Err(why) => {
            report.push("precheck", Status::Error, why);
            return None;
        }
    };
    match answer {
        Err(err) => {
            report.push(
                "precheck",
                Status::Violation(Violation::of(&err)),
                describe(&err),
            );
            // The later steps can still be checked with the whole sample.
            Some(batch)
        }
        Ok(outcomes) => {
            let mut to_send = Vec::new();
            let mut settled = Vec::new();
            for (record, outcome) in batch.iter().zip(&outcomes) {
                match outcome {
                    None => to_send.push(record.clone()),
                    Some(PrecheckOutcome::Rejected(f)) => {
                        settled.push(format!("rejected({})", f.code))
                    }
                    Some(PrecheckOutcome::Permanent(f)) => {
                        settled.push(format!("permanent({})", f.code))
                    }
                }
            }
            let detail = format!(
                "{} sample records: {} to send{}",
                batch.len(),
                to_send.len(),
                if settled.is_empty() {
                    String::new()
                } else {
                    format!(", settled {}", settled.join(", "))
                }
            );
            if to_send.is_empty() {
                report.push(
                    "precheck",
                    Status::Warning,
                    format!("{detail}; the later steps use the whole sample"),
                );
                Some(batch)
            } else {
                report.push("precheck", Status::Ok, detail);
                Some(to_send)
            }
        }
    }
}

/// Runs `build-request` and checks the request as the host would before sending it.
fn build_request(
    session: &mut Session,
    batch: &[SourceRecord],
    transport: &Transport,
    report: &mut Report,
) {
    const NAME: &str = "build-request";
    let request: HttpRequest = match session.call(|i| i.build_request(batch)) {
        Err(why) => return report.push(NAME, Status::Error, why),
        Ok(Err(err)) => {
            return report.push(NAME, Status::Violation(Violation::of(&err)), describe(&err));
        }
        Ok(Ok(Err(f))) => {
            return report.push(
                NAME,
                Status::Warning,
                format!(
                    "refused the sample batch ({}: {}), so its request could not be checked",
                    f.code, f.message
                ),
            );
        }
        Ok(Ok(Ok(request))) => request,
    };
    let prepared = match transport.prepare(&request) {
        Ok(prepared) => prepared,
        Err(refusal) => {
            let violation = match refusal {
                Refusal::ForbiddenHost { .. } => Violation::ForbiddenHost,
                Refusal::InvalidUrl { .. }
                | Refusal::NotHttp(_)
                | Refusal::Method(_)
                | Refusal::HeaderName(_)
                | Refusal::HeaderValue(_) => Violation::MalformedRequest,
            };
            return report.push(NAME, Status::Violation(violation), refusal.to_string());
        }
    };
    let (method, url, dropped) = (prepared.method, prepared.url, prepared.dropped);
    let shape = format!(
        "{method} {url} ({} header{}, a body of {} bytes)",
        request.headers.len(),
        if request.headers.len() == 1 { "" } else { "s" },
        request.body.len()
    );
    if !dropped.is_empty() {
        report.push(
            NAME,
            Status::Warning,
            format!(
                "{shape}; sets {}, which the host owns and drops (credentials come from the sync's `auth`)",
                dropped.join(", ")
            ),
        );
    } else if method == Method::GET && !request.body.is_empty() {
        report.push(
            NAME,
            Status::Warning,
            format!("{shape}; a GET with a body is dropped by many servers"),
        );
    } else {
        report.push(NAME, Status::Ok, shape);
    }
}

/// One canned response, and what a connector usually makes of it.
struct Case {
    name: &'static str,
    response: HttpResponse,
    /// `None` when any verdict is fine; else the advice given when the verdict differs.
    expect: Option<Expectation>,
}

/// Whether a verdict fits, and the advice given when it does not.
type Expectation = (fn(&Verdict) -> bool, &'static str);

fn canned(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body,
        received_at_ms: RECEIVED_AT_MS,
    }
}

fn cases(keys: &[String]) -> Vec<Case> {
    let json = |v: serde_json::Value| v.to_string().into_bytes();
    let array: Vec<serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| serde_json::json!({"id": k, "success": true, "ok": true, "errors": [], "rev": format!("1-{i}")}))
        .collect();
    let results: Vec<serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| serde_json::json!({"id": k, "error": null, "properties": {"email": k, "hs_object_id": i.to_string()}}))
        .collect();
    let mut huge = b"{\"results\": \"".to_vec();
    huge.resize(huge.len() + (10 << 20), b'x');
    huge.extend_from_slice(b"\"}");
    vec![
        Case {
            name: "200 with a JSON array of per-record results",
            response: canned(
                200,
                &[("content-type", "application/json")],
                json(serde_json::Value::Array(array)),
            ),
            expect: None,
        },
        Case {
            name: "200 with an object of per-record results",
            response: canned(
                200,
                &[("content-type", "application/json")],
                json(serde_json::json!({"status": "COMPLETE", "results": results, "errors": []})),
            ),
            expect: None,
        },
        Case {
            name: "400 refusing the whole batch",
            response: canned(
                400,
                &[("content-type", "application/json")],
                json(
                    serde_json::json!({"error": {"code": "INVALID_REQUEST", "message": "the batch was refused"}}),
                ),
            ),
            expect: Some((
                |v| matches!(v, Verdict::BatchRejected(_) | Verdict::PerRecord(_)),
                "a 400 for the whole batch is usually `batch-rejected`: the host then bisects the batch to the record at fault",
            )),
        },
        Case {
            name: "429 with Retry-After: 30",
            response: canned(
                429,
                &[("retry-after", "30")],
                json(serde_json::json!({"error": "too many requests"})),
            ),
            expect: Some((
                |v| matches!(v, Verdict::RateLimited(Some(Wait::AfterMs(30_000)))),
                "`Retry-After: 30` is `rate-limited(after-ms(30000))`: the host pauses every request to the destination that long",
            )),
        },
        Case {
            name: "429 with Retry-After as an HTTP-date",
            response: canned(
                429,
                &[("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT")],
                Vec::new(),
            ),
            expect: Some((
                |v| {
                    matches!(
                        v,
                        Verdict::RateLimited(Some(Wait::UntilUnixMs(1_700_000_120_000)))
                            | Verdict::RateLimited(Some(Wait::AfterMs(120_000)))
                    )
                },
                "an HTTP-date 120 s after `received-at-ms` is `rate-limited(until-unix-ms(1700000120000))`",
            )),
        },
        Case {
            name: "503 without Retry-After",
            response: canned(
                503,
                &[("content-type", "text/html")],
                b"<html><body>Service Unavailable</body></html>".to_vec(),
            ),
            expect: Some((
                |v| matches!(v, Verdict::RateLimited(_) | Verdict::Transient(_)),
                "a 503 is usually `rate-limited` or `transient`, so that the batch is sent again",
            )),
        },
        Case {
            name: "401",
            response: canned(
                401,
                &[("www-authenticate", "Bearer error=\"invalid_token\"")],
                json(serde_json::json!({"error": "invalid_token"})),
            ),
            expect: Some((
                |v| matches!(v, Verdict::AuthExpired(_)),
                "a 401 is usually `auth-expired`: the host renews the credentials once and resends",
            )),
        },
        Case {
            name: "500",
            response: canned(
                500,
                &[("content-type", "application/json")],
                json(serde_json::json!({"error": "internal server error"})),
            ),
            expect: Some((
                |v| matches!(v, Verdict::Transient(_) | Verdict::RateLimited(_)),
                "a 500 is usually `transient`: the host resends after a backoff",
            )),
        },
        Case {
            name: "200 with a malformed body",
            response: canned(
                200,
                &[("content-type", "text/html")],
                b"<html><body>Down for maintenance</body></html>".to_vec(),
            ),
            expect: None,
        },
        Case {
            name: "200 with an empty body",
            response: canned(200, &[], Vec::new()),
            expect: None,
        },
        Case {
            name: "200 with a body of 10 MiB",
            response: canned(200, &[("content-type", "application/json")], huge),
            expect: None,
        },
    ]
}

fn classify(session: &mut Session, keys: &[String], case: Case, report: &mut Report) {
    let name = format!("classify: {}", case.name);
    let started = Instant::now();
    let answer = session.call(|i| i.classify(keys, &case.response));
    let elapsed = started.elapsed();
    match answer {
        Err(why) => report.push(name, Status::Error, why),
        Ok(Err(err)) => report.push(name, Status::Violation(Violation::of(&err)), describe(&err)),
        Ok(Ok(verdict)) => {
            let shown = show(&verdict);
            let slow = if elapsed > Duration::from_millis(100) {
                format!(" (in {})", millis(elapsed))
            } else {
                String::new()
            };
            match case.expect {
                Some((fits, advice)) if !fits(&verdict) => {
                    report.push(name, Status::Warning, format!("{shown}{slow}: {advice}"))
                }
                _ => report.push(name, Status::Ok, format!("{shown}{slow}")),
            }
        }
    }
}

/// A verdict in a short form: `per-record[delivered(id), rejected(CODE)]`,
/// `rate-limited(after 30000 ms)`, `transient(HTTP_500)`.
pub fn show(verdict: &Verdict) -> String {
    let wait = |w: &Option<Wait>| match w {
        None => "no wait given".to_string(),
        Some(Wait::AfterMs(ms)) => format!("after {ms} ms"),
        Some(Wait::UntilUnixMs(at)) => format!("until {at} ms since the epoch"),
    };
    match verdict {
        Verdict::PerRecord(outcomes) => format!(
            "per-record[{}]",
            outcomes
                .iter()
                .map(|o| match o {
                    RecordOutcome::Delivered(id) =>
                        format!("delivered({})", id.as_deref().unwrap_or("-")),
                    RecordOutcome::Rejected(f) => format!("rejected({})", f.code),
                    RecordOutcome::Retry(f) => format!("retry({})", f.code),
                    RecordOutcome::Permanent(f) => format!("permanent({})", f.code),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Verdict::BatchRejected(f) => format!("batch-rejected({})", f.code),
        Verdict::RateLimited(w) => format!("rate-limited({})", wait(w)),
        Verdict::Transient(f) => format!("transient({})", f.code),
        Verdict::AuthExpired(f) => format!("auth-expired({})", f.code),
        Verdict::Fatal(f) => format!("fatal({})", f.code),
    }
}

/// A failed call in one line: a trap's reason without the guest's backtrace.
fn describe(err: &GuestError) -> String {
    err.one_line()
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
