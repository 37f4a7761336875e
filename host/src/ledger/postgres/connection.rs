//! One connection to the state database, owned by a thread of its own: the ledger is
//! called from the runtime's worker threads, where a blocking client may not run its own
//! runtime. Callers hand the thread a job and wait for its answer, as they wait for sled.

use std::sync::Mutex;
use std::sync::mpsc::{Sender, sync_channel};

use postgres::{Client, NoTls};

use crate::ledger::StoreError;
use crate::pg::said;

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// The state database's connection.
pub struct Db {
    jobs: Mutex<Sender<Job>>,
    /// Where the URL came from, for messages: the URL itself holds a password.
    pub url_env: String,
}

impl Db {
    /// Connects with the URL in the environment variable `url_env`.
    pub fn connect_env(url_env: &str) -> anyhow::Result<Db> {
        let url = std::env::var(url_env).map_err(|_| {
            anyhow::anyhow!(
                "state.postgres.url_env: the environment variable `{url_env}` is not set"
            )
        })?;
        Db::connect(url, url_env)
    }

    /// Connects with `url`, which messages name as "the URL in `url_env`".
    pub fn connect(url: String, url_env: &str) -> anyhow::Result<Db> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let (ready, connected) = sync_channel(1);
        std::thread::Builder::new()
            .name("sluice-state-db".into())
            .spawn(move || {
                let mut client = match Client::connect(&url, NoTls) {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        client
                    }
                    Err(err) => {
                        let _ = ready.send(Err(said(&err)));
                        return;
                    }
                };
                // Ends when the Db is dropped (the sender with it).
                for job in queue {
                    job(&mut client);
                }
            })?;
        match connected.recv() {
            Ok(Ok(())) => Ok(Db {
                jobs: Mutex::new(jobs),
                url_env: url_env.to_string(),
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
        job: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = sync_channel(1);
        let sent = self.jobs.lock().unwrap().send(Box::new(move |client| {
            let _ = answer.send(job(client));
        }));
        if sent.is_err() {
            return Err(StoreError::Other(
                "the state database's connection has ended".into(),
            ));
        }
        match answered.recv() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(StoreError::Other(format!(
                "the state database: {}",
                said(&err)
            ))),
            Err(_) => Err(StoreError::Other(
                "the state database's connection has ended".into(),
            )),
        }
    }
}
