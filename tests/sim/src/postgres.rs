//! A real PostgreSQL for the tests and benches that need one: a fresh cluster in a temporary folder,
//! on a free loopback port, run as a non-root user (PostgreSQL refuses root), stopped when
//! dropped. Without PostgreSQL installed, those tests are skipped, except under CI
//! (`CI=true`), where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster; `url` reaches its `postgres` database as a superuser.
pub struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    pub url: String,
}

/// The folder holding `initdb` and `pg_ctl`: Debian keeps them out of PATH.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// `program` from `bin` with `args`, as `nobody` when this process is root.
fn run_as_owner(bin: &Path, program: &str, args: &[&str]) -> std::process::Output {
    let path = bin.join(program);
    let output = if is_root() {
        Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(&path)
            .args(args)
            .output()
    } else {
        Command::new(&path).args(args).output()
    };
    output.unwrap_or_else(|e| panic!("running {}: {e}", path.display()))
}

impl Postgres {
    /// Starts a cluster, or `None` (skip) when PostgreSQL is not installed outside CI.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = binaries() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "PostgreSQL is not installed (Debian's `postgresql`): CI must run this test"
                );
            }
            eprintln!("skipped: PostgreSQL is not installed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            // The cluster's owner must be able to write there.
            Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()
                .unwrap();
        }
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let init = run_as_owner(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "sluice",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c timezone=UTC",
            dir.path().display()
        );
        let log = dir.path().join("log");
        let start = run_as_owner(
            &bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        assert!(
            start.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Some(Postgres {
            _dir: dir,
            data,
            bin,
            url: format!("postgres://sluice@127.0.0.1:{port}/postgres"),
        })
    }

    /// CPU time the server's processes have used, including backends that have ended
    /// (the postmaster reaps them, and Linux adds a reaped child's time to its parent's).
    /// Background workers that are still running are not counted.
    pub fn server_cpu(&self) -> std::time::Duration {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
        let pid = pid.lines().next().unwrap_or_default().trim();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis; utime, stime, cutime and cstime
        // are the 14th to 17th of the line, in clock ticks (100 a second on Linux).
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: u64 = after
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|field| field.parse::<u64>().ok())
            .sum();
        std::time::Duration::from_millis(ticks * 10)
    }

    /// Runs `sql` (one or more statements).
    pub async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
    }
}

impl Postgres {
    /// Stops the cluster at once (its data is for one test run) and removes its folder.
    /// For a cluster that is never dropped (a process's shared one, in a static), at the
    /// process's exit; a second call does nothing.
    pub fn stop(&self) {
        if !self.data.exists() {
            return;
        }
        run_as_owner(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
