//! Which backend the ledger tests run against: the embedded store, or with
//! `SLUICE_TEST_STATE=postgres` a PostgreSQL this process starts once, each scenario and
//! each fresh ledger in a schema of its own. CI runs the ledger suite both ways.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sluice::config::Config;
use sluice::ledger::Ledger;
use sluice_sim::postgres::Postgres;

/// The variable the configs name for the state database's URL.
pub const URL_ENV: &str = "SLUICE_TEST_STATE_URL";

/// Whether this run of the tests keeps the ledger in PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("SLUICE_TEST_STATE").as_deref() == Ok("postgres")
}

/// The process's cluster, shared by its scenarios.
static CLUSTER: OnceLock<Postgres> = OnceLock::new();

/// The process's cluster, started on first use, its URL in [`URL_ENV`]. A static is never
/// dropped, so the cluster is stopped when the process exits: it was left running by every
/// run of the suite on PostgreSQL.
fn cluster() -> &'static Postgres {
    CLUSTER.get_or_init(|| {
        let pg = Postgres::start().expect(
            "SLUICE_TEST_STATE=postgres needs PostgreSQL installed (Debian's `postgresql`)",
        );
        // SAFETY: set once, before any ledger of this process reads it; the tests that
        // run meanwhile only read other variables.
        unsafe { std::env::set_var(URL_ENV, &pg.url) };
        // SAFETY: registers a function with no preconditions, run once by `exit`.
        unsafe { atexit(stop_cluster) };
        pg
    })
}

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> i32;
}

extern "C" fn stop_cluster() {
    if let Some(pg) = CLUSTER.get() {
        pg.stop();
    }
}

/// A schema no other scenario of this process uses.
fn fresh_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The config line that puts a scenario's ledger in its own schema; nothing for the
/// embedded store.
pub fn config_line() -> String {
    if !on_postgres() {
        return String::new();
    }
    cluster();
    format!(
        "state = {{ postgres = {{ url_env = \"{URL_ENV}\", schema = \"{}\" }} }}\n",
        fresh_schema()
    )
}

/// The ledger of a scenario's config, opened again (the embedded store's lock is released
/// a moment after its last handle is dropped).
pub fn ledger_of(config: &Config) -> Ledger {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Ledger::for_config(config) {
            Ok(ledger) => return ledger,
            Err(err) if std::time::Instant::now() > deadline => panic!("reopening: {err:#}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// A new, empty ledger on this run's backend, and the folder it may use.
pub fn fresh_ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = if on_postgres() {
        cluster();
        Ledger::open_postgres(
            URL_ENV,
            &fresh_schema(),
            sluice::ledger::postgres::Access::Exclusive,
        )
        .unwrap()
    } else {
        Ledger::open(dir.path()).unwrap()
    };
    (dir, ledger)
}

/// Everything the ledger of `config` keeps, named: each file of the state directory, or
/// each table of its schema in the state database (every row's columns, as bytes), so a
/// test can look for what must not be stored.
pub async fn everything_stored(config: &Config) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let sluice::config::StateBackend::Postgres { schema, .. } = &config.state {
        let (client, connection) = tokio_postgres::connect(&cluster().url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        for table in [
            "sluice_kv",
            "sluice_delivered",
            "sluice_destinations",
            "sluice_trees",
        ] {
            let sql = format!("select convert_to(t::text, 'UTF8') from \"{schema}\".{table} t");
            let mut bytes = Vec::new();
            for row in client.query(&sql, &[]).await.unwrap() {
                bytes.extend(row.get::<_, Vec<u8>>(0));
                bytes.push(b'\n');
            }
            out.push((format!("table {schema}.{table}"), bytes));
        }
    }
    if config.state_dir.exists() {
        files(&config.state_dir, &mut out);
    }
    out
}

fn files(dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}
