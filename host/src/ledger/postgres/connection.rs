//! One connection to the state database, owned by a thread of its own: the ledger is
//! called from the runtime's worker threads, where a blocking client may not run its own
//! runtime. Callers hand the thread a job and wait for its answer, as they wait for sled.

use std::sync::Mutex;
use std::sync::mpsc::{Sender, sync_channel};
use std::thread::JoinHandle;

use postgres::{Client, NoTls};

use crate::ledger::StoreError;
use crate::pg::said;

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The connection as jobs see it: the client, and the statements it prepared, kept so that
/// a statement run once a verdict is parsed once a connection.
pub struct Conn {
    client: Client,
    statements: std::collections::HashMap<&'static str, postgres::Statement>,
}

impl Conn {
    /// `sql` prepared on this connection, once.
    pub fn cached(&mut self, sql: &'static str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Why a job on the connection failed.
#[derive(Debug)]
pub enum DbError {
    Postgres(postgres::Error),
    /// A write under a lease that has moved on: nothing of it was committed.
    Fenced(Fence),
}

impl From<postgres::Error> for DbError {
    fn from(err: postgres::Error) -> Self {
        DbError::Postgres(err)
    }
}

/// The lease a worker writes under: work item `work` at `generation`. Every write of a
/// fenced ledger checks, in its own statement (see [`held`]), that the item is still
/// running at that generation; a worker whose lease was taken over settles nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub work: String,
    pub generation: i64,
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the lease on `{}` (generation {}) has moved to another worker: this worker \
             settles nothing more of it",
            self.work, self.generation
        )
    }
}

/// The common table expression `held (ok)` that makes a write fenced: `ok` is true unless
/// the write is under a lease (`$1`, the work's id, and `$2`, its generation) that has
/// moved on. `for share` waits for a takeover in progress and holds one off until the
/// statement commits.
///
/// A fenced write is one statement with this in its `with`, never a transaction of several
/// round trips: a worker frozen between two of them (SIGSTOP, a paused VM, a long GC)
/// would keep the work row locked, and a takeover, which claims with `skip locked`, would
/// not see the row until the frozen worker woke.
macro_rules! held {
    () => {
        "held as (select $1::text is null or exists ( \
           select 1 from sluice_work \
           where id = $1 and generation = $2 and state = 'running' for share) as ok)"
    };
}
pub(crate) use held;

impl Fence {
    /// The values of `$1` and `$2` in [`held`]: no work for an unfenced write.
    pub fn params(fence: Option<&Fence>) -> (Option<String>, i64) {
        match fence {
            Some(fence) => (Some(fence.work.clone()), fence.generation),
            None => (None, 0),
        }
    }

    /// What a write whose `held` said `ok` returns.
    pub fn verdict(fence: Option<&Fence>, ok: bool) -> Result<(), DbError> {
        match fence {
            Some(fence) if !ok => Err(DbError::Fenced(fence.clone())),
            _ => Ok(()),
        }
    }
}

/// The state database's connection.
pub struct Db {
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Option<JoinHandle<()>>,
    /// Where the URL came from, for messages: the URL itself holds a password.
    pub url_env: String,
    /// The schema whose tables hold the state (the connection's `search_path`).
    pub schema: String,
}

impl Db {
    /// Connects with the URL in the environment variable `url_env`.
    pub fn connect_env(url_env: &str, schema: &str) -> anyhow::Result<Db> {
        let url = std::env::var(url_env).map_err(|_| {
            anyhow::anyhow!(
                "state.postgres.url_env: the environment variable `{url_env}` is not set"
            )
        })?;
        Db::connect(url, url_env, schema)
    }

    /// Connects with `url`, which messages name as "the URL in `url_env`", to the tables of
    /// `schema` (created if missing; a plain lowercase name, checked by the config).
    pub fn connect(url: String, url_env: &str, schema: &str) -> anyhow::Result<Db> {
        // Processes starting at once would race to create the schema (`if not exists` is
        // not atomic in PostgreSQL): its creation holds a lock named by the schema.
        // Notices ("already exists, skipping") are not news.
        let search_path = format!(
            "set client_min_messages to warning; begin; \
             select pg_advisory_xact_lock(1936482165, hashtext('{schema}')); \
             create schema if not exists \"{schema}\"; commit; \
             set search_path to \"{schema}\""
        );
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let (ready, connected) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("sluice-state-db".into())
            .spawn(move || {
                let connected = Client::connect(&url, NoTls).and_then(|mut client| {
                    client.batch_execute(&search_path)?;
                    Ok(client)
                });
                let mut conn = match connected {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        Conn {
                            client,
                            statements: Default::default(),
                        }
                    }
                    Err(err) => {
                        let _ = ready.send(Err(said(&err)));
                        return;
                    }
                };
                // Ends when the Db is dropped (the sender with it).
                for job in queue {
                    job(&mut conn);
                }
            })?;
        match connected.recv() {
            Ok(Ok(())) => Ok(Db {
                jobs: Mutex::new(Some(jobs)),
                thread: Some(thread),
                url_env: url_env.to_string(),
                schema: schema.to_string(),
            }),
            Ok(Err(said)) => Err(anyhow::anyhow!(
                "connecting to the state database (the URL in `{url_env}`): {said}"
            )),
            Err(_) => Err(anyhow::anyhow!(
                "connecting to the state database: its thread ended"
            )),
        }
    }

    /// Runs `job` on the connection and returns its answer.
    pub fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Conn) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = sync_channel(1);
        let job: Job = Box::new(move |client| {
            let _ = answer.send(job(client));
        });
        let sent = match self.jobs.lock().unwrap().as_ref() {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Other(
                "the state database's connection has ended".into(),
            ));
        }
        match answered.recv() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(DbError::Postgres(err))) => Err(StoreError::Other(format!(
                "the state database: {}",
                said(&err)
            ))),
            Ok(Err(DbError::Fenced(fence))) => Err(StoreError::Fenced(fence.to_string())),
            Err(_) => Err(StoreError::Other(
                "the state database's connection has ended".into(),
            )),
        }
    }
}

impl Drop for Db {
    /// Closes the connection before returning, so that the locks its session held are
    /// released by then: a ledger reopened right after is not refused as in use.
    fn drop(&mut self) {
        let _ = self.call(|client| Ok(client.batch_execute("select pg_advisory_unlock_all()")?));
        self.jobs.lock().unwrap().take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
