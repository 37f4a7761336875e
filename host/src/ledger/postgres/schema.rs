//! The state database's tables, their version, and the lock that keeps one Sluice process
//! on them. A database of another version is refused and left untouched, never reset.

use super::Db;

/// The version these tables are at; an upgrade adds a step and raises it.
pub const VERSION: i32 = 1;

/// Serializes creating the tables between processes starting at once (with the schema's
/// hash as the lock's second half).
const MIGRATION_LOCK: i32 = 0x736c_0001;
/// Held by the process using the schema, for as long as its connection lives.
const IN_USE_LOCK: i32 = 0x736c_0002;

const TABLES: &str = "
    create table sluice_trees (name text primary key);
    create table sluice_kv (
        tree text not null, key bytea not null, value bytea not null,
        primary key (tree, key)
    );
    create table sluice_delivered (
        sync text not null, key text not null, hash bytea not null, destination_id text,
        attempts bigint not null, at_ms bigint not null,
        -- The key's partition hash: a partition's run reads only its own keys.
        key_hash bigint not null,
        primary key (sync, key)
    );
    create table sluice_destinations (sync text primary key, fingerprint bytea not null);
    create table sluice_work (
        id text primary key,
        sync text not null, kind text not null, part integer not null, parts integer not null,
        due_at bigint not null,
        state text not null default 'due',
        owner text, generation bigint not null default 0, lease_until bigint,
        started_at bigint, finished_at bigint, error text
    );
    create unique index sluice_work_one_open on sluice_work (sync, kind, part)
        where state in ('due', 'running');
";

/// How a process holds the schema: a pool's workers share it (their leases keep them
/// apart), while a process that runs syncs by itself (`sluice run`, `sluice retry`) must
/// hold it alone; reading is sharing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Exclusive,
    Shared,
}

/// Why the state database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the state database (the URL in `{url_env}`, schema `{schema}`) has Sluice tables \
         of version {found}, and this Sluice uses version {VERSION}; it was left untouched"
    )]
    Version {
        url_env: String,
        schema: String,
        found: i32,
    },
    #[error(
        "the state database (the URL in `{url_env}`, schema `{schema}`) is in use by \
         another sluice process (a pool of `sluice serve` workers, or a `sluice run`); \
         `sluice run` and `sluice retry` need it alone, and nothing may share it with them"
    )]
    InUse { url_env: String, schema: String },
    #[error("preparing the state database: {0}")]
    Store(#[from] crate::ledger::StoreError),
}

/// Creates the tables if there are none, checks their version, and takes the schema for
/// this process, alone or shared.
pub fn prepare(db: &Db, access: Access) -> Result<(), SchemaError> {
    let found = db.call(|client| {
        let mut tx = client.transaction()?;
        tx.execute(
            "select pg_advisory_xact_lock($1, hashtext(current_schema()))",
            &[&MIGRATION_LOCK],
        )?;
        tx.batch_execute("create table if not exists sluice_schema (version integer not null)")?;
        let found: Option<i32> = tx
            .query_opt("select version from sluice_schema", &[])?
            .map(|row| row.get(0));
        if found.is_none() {
            tx.batch_execute(TABLES)?;
            tx.execute(
                "insert into sluice_schema (version) values ($1)",
                &[&VERSION],
            )?;
        }
        tx.commit()?;
        Ok(found)
    })?;
    if let Some(found) = found
        && found != VERSION
    {
        return Err(SchemaError::Version {
            url_env: db.url_env.clone(),
            schema: db.schema.clone(),
            found,
        });
    }
    let lock = match access {
        Access::Exclusive => "select pg_try_advisory_lock($1, hashtext(current_schema()))",
        Access::Shared => "select pg_try_advisory_lock_shared($1, hashtext(current_schema()))",
    };
    let held = db.call(move |client| {
        let row = client.query_one(lock, &[&IN_USE_LOCK])?;
        Ok(row.get::<_, bool>(0))
    })?;
    if !held {
        return Err(SchemaError::InUse {
            url_env: db.url_env.clone(),
            schema: db.schema.clone(),
        });
    }
    Ok(())
}
