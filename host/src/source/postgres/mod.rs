//! A PostgreSQL query as the source: its rows, streamed, each as one JSON object that
//! the JSONL reader then reads like a line of a file (so keys, invalid rows and positions
//! work the same; a row's position is its row number).
//!
//! The query is prepared first, to learn its columns' types; it then runs wrapped, each
//! column selected the way [`encode::Kind`] says, and the binary rows are written as JSON
//! here (see `encode` for the type mapping, the one README states). The rows are streamed
//! (the extended protocol, no row limit): never held whole. The reader runs on the
//! engine's blocking thread and drives the async driver there.

mod encode;

use std::io::{self, Read};

use anyhow::{Context, Result, anyhow};
use futures_util::{FutureExt, StreamExt};
use tokio::runtime::Handle;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, Row, RowStream};

use encode::Kind;

/// The rows of a query, as JSON lines.
pub struct QueryRows {
    handle: Handle,
    /// Kept so that the connection lives as long as the rows are read.
    _client: Client,
    rows: std::pin::Pin<Box<RowStream>>,
    /// Each column's kind, and its name written as JSON with its colon (`"id":`).
    columns: Vec<(Kind, Vec<u8>)>,
    /// Rows written as JSON lines, read out from `taken`.
    lines: Vec<u8>,
    taken: usize,
    /// Rows written so far, for naming the row a bad value is in.
    written: u64,
    ended: bool,
}

/// How much of the rows already received is written ahead of the reader.
const WRITE_AHEAD: usize = 128 * 1024;

/// The query, its columns selected as their kinds need; the columns are renamed by
/// position (`c1`, `c2`, ...), so names that repeat or need quoting do not matter here.
fn wrapped(query: &str, columns: &[(Kind, Type)]) -> String {
    if columns.is_empty() {
        return trimmed(query).to_string();
    }
    let names: Vec<String> = (1..=columns.len()).map(|i| format!("c{i}")).collect();
    let projection: Vec<String> = columns
        .iter()
        .zip(&names)
        .map(|((kind, ty), name)| kind.select(ty, &format!("q.{name}")))
        .collect();
    format!(
        "SELECT {} FROM ({}) AS q({})",
        projection.join(", "),
        trimmed(query),
        names.join(", ")
    )
}

/// The query without the semicolons a person may end it with.
fn trimmed(query: &str) -> &str {
    query
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
}

/// What the database said, without the connection's details.
fn said(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => err.to_string(),
    }
}

impl QueryRows {
    /// Connects with the URL in `url_env` and starts `query`. Called on a blocking thread
    /// of the runtime.
    pub fn start(url_env: &str, query: &str) -> Result<QueryRows> {
        let url = std::env::var(url_env).map_err(|_| {
            anyhow!("source.postgres.url_env: the environment variable `{url_env}` is not set")
        })?;
        let handle = Handle::try_current().context("the PostgreSQL source needs the runtime")?;
        let (client, connection) = handle
            .block_on(tokio_postgres::connect(&url, NoTls))
            .map_err(|e| {
                anyhow!(
                    "connecting to the PostgreSQL source (the URL in `{url_env}`): {}",
                    said(&e)
                )
            })?;
        handle.spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("the PostgreSQL source's connection ended: {err}");
            }
        });
        let probe = handle
            .block_on(client.prepare(trimmed(query)))
            .map_err(|e| anyhow!("the PostgreSQL source's query: {}", said(&e)))?;
        let kinds: Vec<(Kind, Type)> = probe
            .columns()
            .iter()
            .map(|c| (Kind::of(c.type_()), c.type_().clone()))
            .collect();
        let columns = probe
            .columns()
            .iter()
            .zip(&kinds)
            .map(|(column, (kind, _))| {
                let mut name = serde_json::to_vec(column.name()).expect("a string is JSON");
                name.push(b':');
                (*kind, name)
            })
            .collect();
        let statement = wrapped(query, &kinds);
        let rows = handle
            .block_on(client.query_raw(&statement, std::iter::empty::<i32>()))
            .map_err(|e| anyhow!("the PostgreSQL source's query: {}", said(&e)))?;
        Ok(QueryRows {
            handle,
            _client: client,
            rows: Box::pin(rows),
            columns,
            lines: Vec::with_capacity(WRITE_AHEAD * 2),
            taken: 0,
            written: 0,
            ended: false,
        })
    }

    /// Writes the rows already received (waiting for the first one) as JSON lines.
    fn write_ahead(&mut self) -> io::Result<()> {
        self.lines.clear();
        self.taken = 0;
        let mut next = self.handle.block_on(self.rows.next());
        loop {
            match next {
                None => {
                    self.ended = true;
                    return Ok(());
                }
                Some(Err(err)) => {
                    return Err(io::Error::other(format!(
                        "the PostgreSQL source's query failed while its rows were read: {}; \
                         nothing of this read is sent",
                        said(&err)
                    )));
                }
                Some(Ok(row)) => self.write_row(&row)?,
            }
            if self.lines.len() >= WRITE_AHEAD {
                return Ok(());
            }
            match self.rows.next().now_or_never() {
                Some(ready) => next = ready,
                None => return Ok(()),
            }
        }
    }

    fn write_row(&mut self, row: &Row) -> io::Result<()> {
        self.written += 1;
        self.lines.push(b'{');
        for (i, (kind, name)) in self.columns.iter().enumerate() {
            if i > 0 {
                self.lines.push(b',');
            }
            self.lines.extend_from_slice(name);
            let raw = row
                .try_get::<_, Option<Bytes>>(i)
                .map_err(io::Error::other)?;
            encode::value(&mut self.lines, *kind, raw.map(|b| b.0)).map_err(|err| {
                io::Error::other(format!(
                    "the PostgreSQL source's row {}, column {}: {err}",
                    self.written,
                    String::from_utf8_lossy(&name[..name.len() - 1])
                ))
            })?;
        }
        self.lines.extend_from_slice(b"}\n");
        Ok(())
    }
}

/// A column's value as the server sent it, in binary.
struct Bytes<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Bytes<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Bytes(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl Read for QueryRows {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.taken == self.lines.len() && !self.ended {
            self.write_ahead()?;
        }
        let ready = &self.lines[self.taken..];
        let n = out.len().min(ready.len());
        out[..n].copy_from_slice(&ready[..n]);
        self.taken += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_wrapped_with_its_columns_renamed_by_position() {
        let columns = vec![
            (Kind::Int8, Type::INT8),
            (Kind::Numeric, Type::NUMERIC),
            (Kind::Json, Type::INTERVAL),
            (Kind::Json, Type::JSON),
        ];
        assert_eq!(
            wrapped("select * from t;  ", &columns),
            "SELECT q.c1, q.c2::text, to_json(q.c3), q.c4 FROM (select * from t) AS q(c1, c2, c3, c4)"
        );
        assert_eq!(wrapped("select;", &[]), "select");
    }
}
