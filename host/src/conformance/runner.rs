//! Runs a conformance check: loads the component as the host would, then calls it step
//! by step, giving each step a fresh instance after a failed call.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::Method;

use super::cases::{Case, as_operation, cases, sample, show};
use super::report::{Report, Status, Violation};

use crate::sandbox::{
    Connector, ConnectorInstance, GuestError, GuestErrorKind, HttpRequest, Operation,
    PrecheckOutcome, Runtime, SUPPORTED_VERSIONS, SandboxLimits, SourceRecord, WorldError,
};
use crate::transport::{HostPattern, Refusal, Transport};

/// The base URL relative request paths are resolved against in the check.
const BASE_URL: &str = "https://destination.example";

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
    /// The records to check with (`--records`), instead of the built-in sample: a
    /// connector that validates its records may refuse the sample.
    pub records: Option<Vec<SourceRecord>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allowed_hosts: Vec::new(),
            limits: SandboxLimits::default(),
            cache_dir: None,
            name: "connector".to_string(),
            records: None,
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
    let transport = Transport::new(
        reqwest::Client::new(),
        reqwest::Url::parse(BASE_URL).expect("a valid URL"),
        hosts,
        Duration::from_secs(30),
        usize::MAX,
    );
    let limit = report.limits.map_or(3, |(records, _)| records) as usize;
    let records = match &options.records {
        Some(records) => records.iter().take(limit).cloned().collect(),
        None => sample(limit as u32),
    };
    // Each operation the connector claims, with its own batch (a 0.1.0 connector: the
    // upserts it always did, under the step names it always had).
    let operations = report.operations.clone();
    for operation in operations {
        let suffix = if report.operations == [Operation::Upsert] {
            String::new()
        } else {
            format!(" ({operation})")
        };
        let batch = as_operation(&records, operation);
        let Some(batch) = precheck(&mut session, batch, &suffix, &mut report) else {
            return report;
        };
        build_request(&mut session, &batch, &transport, &suffix, &mut report);
        let keys: Vec<String> = batch.iter().map(|r| r.key.clone()).collect();
        for case in cases(&keys) {
            classify(&mut session, &keys, operation, case, &suffix, &mut report);
        }
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
        Ok(Ok(capabilities)) => {
            let limits = capabilities.limits;
            let (records, bytes) = (limits.max_batch_records, limits.max_batch_bytes);
            report.limits = Some((records, bytes));
            if capabilities.operations.is_empty() {
                report.push(
                    "configure",
                    Status::Violation(Violation::Limits),
                    "states no operation: a connector must support at least one",
                );
                return false;
            }
            report.operations = capabilities.operations.clone();
            report.operations.dedup();
            let operations: Vec<&str> = report.operations.iter().map(|o| o.name()).collect();
            let stated = format!(
                "at most {records} records and {bytes} bytes of payloads a batch; {}",
                operations.join(", ")
            );
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

/// Runs `batch` through `precheck`; the records left to send (or all of them, when
/// precheck settled every one), or `None` when nothing more can be checked.
fn precheck(
    session: &mut Session,
    batch: Vec<SourceRecord>,
    suffix: &str,
    report: &mut Report,
) -> Option<Vec<SourceRecord>> {
    let name = format!("precheck{suffix}");
    let answer = match session.call(|i| i.precheck(&batch)) {
        Ok(answer) => answer,
        Err(why) => {
            report.push(name, Status::Error, why);
            return None;
        }
    };
    match answer {
        Err(err) => {
            report.push(name, Status::Violation(Violation::of(&err)), describe(&err));
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
                "{} records: {} to send{}",
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
                    name,
                    Status::Warning,
                    format!("{detail}; the later steps use the whole batch"),
                );
                Some(batch)
            } else {
                report.push(name, Status::Ok, detail);
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
    suffix: &str,
    report: &mut Report,
) {
    let name = format!("build-request{suffix}");
    let name = name.as_str();
    let request: HttpRequest = match session.call(|i| i.build_request(batch, "sluice-check-0")) {
        Err(why) => return report.push(name, Status::Error, why),
        Ok(Err(err)) => {
            return report.push(name, Status::Violation(Violation::of(&err)), describe(&err));
        }
        Ok(Ok(Err(f))) => {
            return report.push(
                name,
                Status::NotChecked,
                format!(
                    "refused the batch ({}: {}), so its request could not be checked",
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
            return report.push(name, Status::Violation(violation), refusal.to_string());
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
            name,
            Status::Warning,
            format!(
                "{shape}; sets {}, which the host owns and drops (credentials come from the sync's `auth`)",
                dropped.join(", ")
            ),
        );
    } else if method == Method::GET && !request.body.is_empty() {
        report.push(
            name,
            Status::Warning,
            format!("{shape}; a GET with a body is dropped by many servers"),
        );
    } else {
        report.push(name, Status::Ok, shape);
    }
}

fn classify(
    session: &mut Session,
    keys: &[String],
    operation: Operation,
    case: Case,
    suffix: &str,
    report: &mut Report,
) {
    let name = format!("classify{suffix}: {}", case.name);
    let started = Instant::now();
    let answer = session.call(|i| i.classify(keys, operation, &case.response));
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

/// A failed call in one line: a trap's reason without the guest's backtrace.
fn describe(err: &GuestError) -> String {
    err.one_line()
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
