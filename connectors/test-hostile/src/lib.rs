//! A deliberately misbehaving connector for the host's sandbox tests: it loops forever,
//! exhausts memory, traps, asks for a forbidden host, breaks the length contract or chats
//! on stdout/stderr, as its settings say. Never bundled for operators.
//!
//! Settings: `mode` = ok | loop | memory-bomb | trap | forbidden-host | wrong-length |
//! chatty; `phase` = configure | precheck | build-request (default) | classify, the call in
//! which loop, memory-bomb and trap misbehave.

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "destination-connector" });

use exports::sluice::connector::destination::Guest;
use sluice::connector::host::{Level, log};
use sluice::connector::types::{
    Failure, HttpRequest, HttpResponse, Limits, PrecheckOutcome, RecordOutcome, SourceRecord,
    Verdict,
};
use std::hint::black_box;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Loop,
    MemoryBomb,
    Trap,
    ForbiddenHost,
    WrongLength,
    Chatty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Configure,
    Precheck,
    BuildRequest,
    Classify,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    mode: Mode,
    phase: Phase,
}

static CONFIG: common::Slot<Config> = common::Slot::new();

/// Runs at the start of every call: misbehaves if this is the configured phase, and chats
/// in chatty mode.
fn enter(config: Config, phase: Phase) {
    match config.mode {
        Mode::Loop if config.phase == phase => endless_loop(),
        Mode::MemoryBomb if config.phase == phase => memory_bomb(),
        Mode::Trap if config.phase == phase => panic!("test-hostile: trap in {phase:?}"),
        Mode::Chatty => {
            println!("test-hostile: stdout in {phase:?}");
            eprintln!("test-hostile: stderr in {phase:?}");
            log(Level::Info, "hello from hostile");
        }
        _ => {}
    }
}

/// Spins forever; `black_box` keeps the optimizer from proving the loop useless.
fn endless_loop() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks filled with non-zero bytes, so every page is really written, and
/// keeps them all until the instance hits its memory limit.
fn memory_bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(black_box(vec![0xA5; 1 << 20]));
        black_box(&hoard);
    }
}

fn config() -> Config {
    // Unconfigured: behave.
    CONFIG.get().unwrap_or(Config {
        mode: Mode::Ok,
        phase: Phase::BuildRequest,
    })
}

fn parse_config(settings: Vec<(String, String)>) -> Result<Config, common::SettingError> {
    use common::SettingError as E;
    let s = common::Settings::parse(settings, &["mode", "phase"])?;
    let mode = match s.required("mode")?.as_str() {
        "ok" => Mode::Ok,
        "loop" => Mode::Loop,
        "memory-bomb" => Mode::MemoryBomb,
        "trap" => Mode::Trap,
        "forbidden-host" => Mode::ForbiddenHost,
        "wrong-length" => Mode::WrongLength,
        "chatty" => Mode::Chatty,
        other => return Err(E::invalid("mode", format!("unknown mode {other:?}"))),
    };
    let phase = match s.optional("phase").as_deref() {
        Some("configure") => Phase::Configure,
        Some("precheck") => Phase::Precheck,
        None | Some("build-request") => Phase::BuildRequest,
        Some("classify") => Phase::Classify,
        Some(other) => return Err(E::invalid("phase", format!("unknown phase {other:?}"))),
    };
    Ok(Config { mode, phase })
}

struct Hostile;

impl Guest for Hostile {
    fn configure(settings: Vec<(String, String)>) -> Result<Limits, Failure> {
        let config = parse_config(settings).map_err(|e| Failure {
            code: e.code.into(),
            message: e.message,
            fields: vec![],
        })?;
        enter(config, Phase::Configure);
        CONFIG.set(config);
        Ok(Limits {
            max_batch_records: 100,
            max_batch_bytes: 1_000_000,
        })
    }

    fn precheck(batch: Vec<SourceRecord>) -> Vec<Option<PrecheckOutcome>> {
        let config = config();
        enter(config, Phase::Precheck);
        let extra = usize::from(config.mode == Mode::WrongLength);
        vec![None; batch.len() + extra]
    }

    fn build_request(batch: Vec<SourceRecord>) -> Result<HttpRequest, Failure> {
        let config = config();
        enter(config, Phase::BuildRequest);
        let payloads: Vec<&str> = batch.iter().map(|r| r.payload.as_str()).collect();
        let url = match config.mode {
            Mode::ForbiddenHost => "http://127.0.0.1:1/exfiltrate",
            _ => "/hostile",
        };
        Ok(HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!("[{}]", payloads.join(",")).into_bytes(),
        })
    }

    fn classify(keys: Vec<String>, response: HttpResponse) -> Verdict {
        let config = config();
        enter(config, Phase::Classify);
        if !(200..300).contains(&response.status) {
            return Verdict::Transient(Failure {
                code: format!("HTTP_{}", response.status),
                message: format!("HTTP {}", response.status),
                fields: vec![],
            });
        }
        let extra = usize::from(config.mode == Mode::WrongLength);
        Verdict::PerRecord(
            (0..keys.len() + extra)
                .map(|_| RecordOutcome::Delivered(None))
                .collect(),
        )
    }
}

export!(Hostile);
