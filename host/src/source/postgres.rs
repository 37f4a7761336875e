//! A PostgreSQL query as the source: its rows, streamed, each as one JSON object that
//! the JSONL reader then reads like a line of a file (so keys, invalid rows and positions
//! work the same; a row's position is its row number).
//!
//! PostgreSQL itself turns each row into JSON (`row_to_json`), so every type becomes what
//! the database says it is in JSON: integers and floats as numbers (NaN and infinities as
//! strings), booleans, text, `json`/`jsonb` as nested JSON, arrays as arrays, `uuid` as a
//! string, `date` as `2024-01-31`, `timestamptz` in RFC 3339 with its offset, NULL as
//! null. Three are rewritten first, from the query's column types: `numeric` is a number
//! when a double holds it exactly and its exact text as a string otherwise, `bytea`
//! becomes base64, and `timestamp` (without a zone), which has no offset to give, is
//! written as RFC 3339 in UTC (`...Z`), as it is taken to be.
//!
//! The rows are streamed (the extended protocol, no row limit): never held whole. The
//! reader runs on the engine's blocking thread and drives the async driver there.

use std::collections::VecDeque;
use std::io::{self, Read};

use anyhow::{Context, Result, anyhow};
use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, RowStream};

/// The rows of a query, as JSON lines.
pub struct QueryRows {
    handle: Handle,
    /// Kept so that the connection lives as long as the rows are read.
    _client: Client,
    rows: std::pin::Pin<Box<RowStream>>,
    buffer: VecDeque<u8>,
    ended: bool,
}

/// The query's rows as JSON text, with `numeric`, `bytea` and `timestamp` columns rewritten.
fn wrapped(query: &str, columns: &[(String, Type)]) -> String {
    let projection: Vec<String> = columns
        .iter()
        .map(|(name, ty)| {
            let column = format!("q.{}", quote_ident(name));
            let expr = if *ty == Type::BYTEA {
                format!("translate(encode({column}, 'base64'), E'\\n', '')")
            } else if *ty == Type::NUMERIC {
                // A number when a double holds it exactly (15 significant digits), else
                // its exact text as a string, so no digit is lost downstream.
                format!(
                    "CASE WHEN {column}::float8::numeric = {column} THEN to_jsonb({column}) \
                     ELSE to_jsonb({column}::text) END"
                )
            } else if *ty == Type::TIMESTAMP {
                format!("to_char({column}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            } else {
                column
            };
            format!("{expr} AS {}", quote_ident(name))
        })
        .collect();
    format!(
        "SELECT row_to_json(r)::text FROM (SELECT {} FROM ({}) AS q) AS r",
        if projection.is_empty() {
            "NULL AS nothing".to_string()
        } else {
            projection.join(", ")
        },
        trimmed(query)
    )
}

/// The query without the semicolons a person may end it with.
fn trimmed(query: &str) -> &str {
    query
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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
        let columns: Vec<(String, Type)> = probe
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.type_().clone()))
            .collect();
        let statement = wrapped(query, &columns);
        let rows = handle
            .block_on(client.query_raw(&statement, std::iter::empty::<i32>()))
            .map_err(|e| anyhow!("the PostgreSQL source's query: {}", said(&e)))?;
        Ok(QueryRows {
            handle,
            _client: client,
            rows: Box::pin(rows),
            buffer: VecDeque::new(),
            ended: false,
        })
    }
}

impl Read for QueryRows {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buffer.is_empty() && !self.ended {
            match self.handle.block_on(self.rows.next()) {
                None => self.ended = true,
                Some(Err(err)) => {
                    return Err(io::Error::other(format!(
                        "the PostgreSQL source's query failed while its rows were read: {}; \
                         nothing of this read is sent",
                        said(&err)
                    )));
                }
                Some(Ok(row)) => {
                    let json: Option<&str> = row.try_get(0).map_err(io::Error::other)?;
                    self.buffer.extend(json.unwrap_or("null").as_bytes());
                    self.buffer.push_back(b'\n');
                }
            }
        }
        let n = out.len().min(self.buffer.len());
        for (slot, byte) in out.iter_mut().zip(self.buffer.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_wrapped_with_its_columns_quoted_and_rewritten() {
        let columns = vec![
            ("id".to_string(), Type::INT8),
            ("Odd \"name\"".to_string(), Type::TEXT),
            ("blob".to_string(), Type::BYTEA),
            ("at".to_string(), Type::TIMESTAMP),
        ];
        let sql = wrapped("select * from t;  ", &columns);
        assert!(sql.starts_with("SELECT row_to_json(r)::text FROM (SELECT q.\"id\" AS \"id\", q.\"Odd \"\"name\"\"\" AS \"Odd \"\"name\"\"\", "), "{sql}");
        assert!(
            sql.contains("translate(encode(q.\"blob\", 'base64'), E'\\n', '') AS \"blob\""),
            "{sql}"
        );
        assert!(
            sql.contains("to_char(q.\"at\", 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS \"at\""),
            "{sql}"
        );
        assert!(sql.ends_with("FROM (select * from t) AS q) AS r"), "{sql}");
    }
}
