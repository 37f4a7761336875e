//! A PostgreSQL query as the source: its rows, streamed, each written as one JSON object
//! whose key is read by the JSONL reader's rules (so a key means the same in every
//! source); a row's position is its row number.
//!
//! The query is prepared first, to learn its columns' types; it then runs wrapped, each
//! column selected the way [`encode::Kind`] says, and the binary rows are written as JSON
//! here (see `encode` for the type mapping, the one README states). The rows are streamed
//! (the extended protocol, no row limit): never held whole. The reader runs on the
//! engine's blocking thread and drives the async driver there.

mod encode;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{FutureExt, StreamExt};
use tokio::runtime::Handle;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, Row, RowStream};

use super::{Row as SourceRow, RowReader, jsonl};
use crate::pg::said;
use encode::Kind;

/// The rows of a query, each as one JSON object.
pub struct QueryRows {
    handle: Handle,
    /// Kept so that the connection lives as long as the rows are read.
    _client: Client,
    rows: std::pin::Pin<Box<RowStream>>,
    /// Each column's kind, and its name written as JSON with its colon (`"id":`).
    columns: Vec<(Kind, Vec<u8>)>,
    /// The sync's key field, and the column that holds it.
    key: String,
    key_column: usize,
    /// The current row as JSON.
    object: String,
    /// The current row's key when its JSON had escapes to undo.
    unescaped: String,
    /// Rows read so far: the current row's number.
    number: u64,
}

/// The query, its columns selected as their kinds need; the columns are renamed by
/// position (`c1`, `c2`, ...), so names that repeat or need quoting do not matter here.
fn wrapped(query: &str, columns: &[Kind]) -> String {
    if columns.is_empty() {
        return trimmed(query).to_string();
    }
    let names: Vec<String> = (1..=columns.len()).map(|i| format!("c{i}")).collect();
    let projection: Vec<String> = columns
        .iter()
        .zip(&names)
        .map(|(kind, name)| kind.select(&format!("q.{name}")))
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

impl QueryRows {
    /// Connects with the URL in `url_env` and starts `query`, whose column `key` holds each
    /// row's key. Called on a blocking thread of the runtime.
    pub fn start(url_env: &str, query: &str, key: &str) -> Result<QueryRows> {
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
        let kinds: Vec<Kind> = probe
            .columns()
            .iter()
            .map(|c| Kind::of(c.type_()))
            .collect();
        let columns = probe
            .columns()
            .iter()
            .zip(&kinds)
            .map(|(column, kind)| {
                let mut name = serde_json::to_vec(column.name()).expect("a string is JSON");
                name.push(b':');
                (*kind, name)
            })
            .collect();
        let Some(key_column) = probe.columns().iter().position(|c| c.name() == key) else {
            let names: Vec<&str> = probe.columns().iter().map(|c| c.name()).collect();
            bail!(
                "the PostgreSQL source's query has no column `{key}`, the sync's key; \
                 its columns are: {}",
                names.join(", ")
            );
        };
        let statement = wrapped(query, &kinds);
        let rows = handle
            .block_on(client.query_raw(&statement, std::iter::empty::<i32>()))
            .map_err(|e| anyhow!("the PostgreSQL source's query: {}", said(&e)))?;
        Ok(QueryRows {
            handle,
            _client: client,
            rows: Box::pin(rows),
            columns,
            key: key.to_string(),
            key_column,
            object: String::new(),
            unescaped: String::new(),
            number: 0,
        })
    }

    /// Writes `row` as one JSON object into `object`; returns where its key's value is.
    fn write(&mut self, row: &Row) -> Result<std::ops::Range<usize>> {
        // Written as bytes, then kept as text: every value `encode` writes is UTF-8
        // (checked text, JSON from the server, ASCII for the rest).
        let mut out = std::mem::take(&mut self.object).into_bytes();
        out.clear();
        out.push(b'{');
        let mut key = 0..0;
        for (i, (kind, name)) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name);
            let raw = row.try_get::<_, Option<Bytes>>(i)?;
            let start = out.len();
            encode::value(&mut out, *kind, raw.map(|b| b.0)).map_err(|err| {
                anyhow!(
                    "the PostgreSQL source's row {}, column {}: {err}",
                    self.number,
                    String::from_utf8_lossy(&name[..name.len() - 1])
                )
            })?;
            if i == self.key_column {
                key = start..out.len();
            }
        }
        out.push(b'}');
        self.object = String::from_utf8(out).context("a row written as JSON is not UTF-8")?;
        Ok(key)
    }
}

impl RowReader for QueryRows {
    fn next_row(&mut self) -> Result<Option<SourceRow<'_>>> {
        // Rows already received are taken without parking the thread.
        let next = match self.rows.next().now_or_never() {
            Some(ready) => ready,
            None => self.handle.block_on(self.rows.next()),
        };
        let row = match next {
            None => return Ok(None),
            Some(Err(err)) => bail!(
                "the PostgreSQL source's query failed while its rows were read: {}; \
                 nothing of this read is sent",
                said(&err)
            ),
            Some(Ok(row)) => row,
        };
        self.number += 1;
        let key = self.write(&row)?;
        Ok(Some(jsonl::keyed(
            &self.object,
            &self.object[key],
            &self.key,
            self.number,
            &mut self.unescaped,
        )))
    }
}

/// A column's value as the server sent it, in binary.
struct Bytes<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Bytes<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Bytes(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_wrapped_with_its_columns_renamed_by_position() {
        let columns: Vec<Kind> = [Type::INT8, Type::NUMERIC, Type::INTERVAL, Type::JSON]
            .iter()
            .map(Kind::of)
            .collect();
        assert_eq!(
            wrapped("select * from t;  ", &columns),
            "SELECT q.c1, q.c2::text, to_json(q.c3), q.c4 FROM (select * from t) AS q(c1, c2, c3, c4)"
        );
        assert_eq!(wrapped("select;", &[]), "select");
    }
}
