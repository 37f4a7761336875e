//! The state database against a real PostgreSQL (started in a temporary folder; skipped
//! without PostgreSQL installed, except under CI): the store keeps the same contract as
//! sled, deliveries fold as the log's do, and a database is never reset or shared.

use sluice_sim::postgres::Postgres;

use super::*;
use crate::ledger::delivered::{Delivery, Fingerprint};
use crate::ledger::deliveries::Deliveries;
use crate::ledger::{Ledger, PayloadHash, Store, StoreError};

fn db(pg: &Postgres) -> Db {
    Db::connect(pg.url.clone(), "TEST_STATE_URL", "public").unwrap()
}

fn delivery<'a>(key: &'a str, hash: u128, id: Option<&'a str>, attempts: u32) -> Delivery<'a> {
    Delivery {
        key,
        hash: hash.to_le_bytes(),
        destination_id: id,
        attempts,
        at_ms: 1_000 + attempts as u64,
    }
}

#[test]
fn the_store_keeps_the_contract_of_every_store() {
    let Some(pg) = Postgres::start() else { return };
    let db = std::sync::Arc::new(db(&pg));
    prepare(&db, Access::Exclusive).unwrap();
    crate::ledger::store::check_contract(&PgStore::new(db, None));
}

#[test]
fn a_tree_iterates_in_byte_order_across_pages() {
    let Some(pg) = Postgres::start() else { return };
    let db = std::sync::Arc::new(db(&pg));
    prepare(&db, Access::Exclusive).unwrap();
    let store = PgStore::new(db, None);
    let tree = store.tree("many").unwrap();
    let mut batch = crate::ledger::store::Batch::default();
    let keys: Vec<Vec<u8>> = (0..2_500u32).map(|i| i.to_be_bytes().to_vec()).collect();
    for key in &keys {
        batch.insert(key, vec![0xff, key[3]]);
    }
    // A key written twice in one batch keeps its last value.
    batch.insert(&keys[7], b"last".to_vec());
    tree.apply(&batch).unwrap();
    let read: Vec<Vec<u8>> = tree.iter().map(|p| p.unwrap().0).collect();
    assert_eq!(read, keys);
    let reversed: Vec<Vec<u8>> = tree.iter_rev().map(|p| p.unwrap().0).collect();
    assert_eq!(reversed, keys.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(tree.get(&keys[7]).unwrap().as_deref(), Some(&b"last"[..]));
    assert_eq!(tree.len(), 2_500);
}

#[test]
fn deliveries_fold_as_the_log_does_and_reset_forgets_them() {
    let Some(pg) = Postgres::start() else { return };
    let db = std::sync::Arc::new(db(&pg));
    prepare(&db, Access::Exclusive).unwrap();
    let deliveries = PgDeliveries::new(db.clone(), "accounts", None);
    let other = PgDeliveries::new(db, "contacts", None);
    assert_eq!(deliveries.all().unwrap().1, None);
    let first = Fingerprint::of(&["builtin:rest", "http://a"]);
    deliveries.stamp(first).unwrap();
    deliveries
        .append(&[delivery("a", 1, Some("id-a"), 2), delivery("b", 2, None, 1)])
        .unwrap();
    // A later verdict: a new payload for `a` (no id this time: the old one stays), and a
    // key delivered twice in one verdict.
    deliveries
        .append(&[
            delivery("a", 3, None, 1),
            delivery("c", 4, Some("id-c"), 1),
            delivery("c", 5, None, 1),
        ])
        .unwrap();
    other.append(&[delivery("a", 9, None, 1)]).unwrap();
    let (states, fingerprint) = deliveries.all().unwrap();
    assert_eq!(fingerprint, Some(first));
    assert_eq!(states.len(), 3);
    assert_eq!(states["a"].hash, PayloadHash(3));
    assert_eq!(states["a"].destination_id.as_deref(), Some("id-a"));
    assert_eq!(states["a"].attempts, 3);
    assert_eq!(
        (states["c"].hash, states["c"].attempts),
        (PayloadHash(5), 2)
    );
    assert_eq!(states["c"].destination_id.as_deref(), Some("id-c"));
    let (index, _) = deliveries.index().unwrap();
    assert_eq!(index.confirmed("a", PayloadHash(3)), Some(true));
    assert_eq!(index.confirmed("a", PayloadHash(1)), Some(false));
    assert_eq!(index.confirmed("z", PayloadHash(3)), None);

    let second = Fingerprint::of(&["builtin:rest", "http://b"]);
    deliveries.reset(second).unwrap();
    let (states, fingerprint) = deliveries.all().unwrap();
    assert_eq!((states.len(), fingerprint), (0, Some(second)));
    assert_eq!(
        other.all().unwrap().0.len(),
        1,
        "another sync's deliveries stay"
    );
}

#[test]
fn a_partitions_index_holds_only_its_keys() {
    let Some(pg) = Postgres::start() else { return };
    let db = std::sync::Arc::new(db(&pg));
    prepare(&db, Access::Exclusive).unwrap();
    let deliveries = PgDeliveries::new(db, "parts", None);
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    let records: Vec<Delivery<'_>> = keys.iter().map(|k| delivery(k, 7, None, 1)).collect();
    deliveries.append(&records).unwrap();
    let mut total = 0;
    for index in 0..4 {
        let partition = crate::source::partition::Partition { index, count: 4 };
        let (read, _) = deliveries.index_of(Some(partition)).unwrap();
        for key in &keys {
            let found = read.confirmed(key, PayloadHash(7)).is_some();
            assert_eq!(found, partition.holds(key), "{key} in {partition}");
            total += usize::from(found);
        }
    }
    assert_eq!(total, keys.len());
}

#[test]
fn a_read_of_many_deliveries_crosses_pages() {
    let Some(pg) = Postgres::start() else { return };
    let db = std::sync::Arc::new(db(&pg));
    prepare(&db, Access::Exclusive).unwrap();
    let deliveries = PgDeliveries::new(db, "big", None);
    let keys: Vec<String> = (0..45_000).map(|i| format!("k{i:06}")).collect();
    for chunk in keys.chunks(5_000) {
        let records: Vec<Delivery<'_>> = chunk.iter().map(|k| delivery(k, 7, None, 1)).collect();
        deliveries.append(&records).unwrap();
    }
    let mut seen = Vec::new();
    deliveries
        .read(&mut |d| seen.push(d.key.to_string()))
        .unwrap();
    assert_eq!(seen, keys);
}

#[test]
fn a_database_in_use_or_of_another_version_is_refused_and_left_alone() {
    let Some(pg) = Postgres::start() else { return };
    let held = Ledger::on_database(db(&pg), Access::Exclusive).unwrap();
    let err = Ledger::on_database(db(&pg), Access::Exclusive)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("in use by another sluice process"), "{err}");
    assert!(
        err.contains("TEST_STATE_URL") && !err.contains(&pg.url),
        "{err}"
    );
    held.sync("s")
        .unwrap()
        .delivered
        .append(&[delivery("kept", 1, None, 1)])
        .unwrap();
    drop(held);

    let admin = db(&pg);
    admin
        .call(|c| Ok(c.batch_execute("update sluice_schema set version = 99")?))
        .unwrap();
    let err = Ledger::on_database(db(&pg), Access::Exclusive)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("version 99") && err.contains("left untouched"),
        "{err}"
    );
    let kept: i64 = admin
        .call(|c| {
            Ok(c.query_one("select count(*) from sluice_delivered", &[])?
                .get(0))
        })
        .unwrap();
    assert_eq!(kept, 1);
}

#[test]
fn a_database_that_cannot_be_reached_is_named_without_its_password() {
    let err = Db::connect(
        "postgres://sync:Zx9-state-pw@127.0.0.1:1/db".to_string(),
        "SLUICE_DATABASE_URL",
        "public",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("the URL in `SLUICE_DATABASE_URL`"), "{err}");
    assert!(!err.contains("Zx9-state-pw"), "{err}");
}

#[test]
fn two_schemas_of_one_database_are_two_ledgers() {
    let Some(pg) = Postgres::start() else { return };
    let open = |schema: &str| {
        Ledger::on_database(
            Db::connect(pg.url.clone(), "TEST_STATE_URL", schema).unwrap(),
            Access::Exclusive,
        )
        .unwrap()
    };
    let (blue, green) = (open("blue"), open("green"));
    blue.sync("s")
        .unwrap()
        .delivered
        .append(&[delivery("only-blue", 1, None, 1)])
        .unwrap();
    assert_eq!(blue.sync("s").unwrap().delivered.all().unwrap().0.len(), 1);
    assert_eq!(green.sync("s").unwrap().delivered.all().unwrap().0.len(), 0);
    // Dropping a ledger releases its schema at once.
    drop(blue);
    let again = open("blue");
    assert_eq!(again.sync("s").unwrap().delivered.all().unwrap().0.len(), 1);
}

#[test]
fn a_fenced_ledger_writes_nothing_once_its_lease_moved_on() {
    let Some(pg) = Postgres::start() else { return };
    let ledger = Ledger::on_database(db(&pg), Access::Shared).unwrap();
    let admin = db(&pg);
    admin
        .call(|c| {
            Ok(c.batch_execute(
                "insert into sluice_work (id, sync, kind, part, parts, due_at, state, generation) \
                 values ('s/run/1/0', 's', 'run', 0, 1, 1, 'running', 1)",
            )?)
        })
        .unwrap();
    let fenced = ledger
        .fenced(Fence {
            work: "s/run/1/0".into(),
            generation: 1,
        })
        .unwrap();
    let sync = fenced.sync("s").unwrap();
    sync.delivered
        .append(&[delivery("before", 1, None, 1)])
        .unwrap();
    sync.tree.insert(b"k", b"v").unwrap();
    // Another worker takes the work over.
    admin
        .call(|c| Ok(c.batch_execute("update sluice_work set generation = 2")?))
        .unwrap();
    let refused = sync.delivered.append(&[delivery("after", 1, None, 1)]);
    assert!(
        matches!(&refused, Err(crate::ledger::delivered::LogError::Fenced(why)) if why.contains("moved to another worker")),
        "{refused:?}"
    );
    assert!(matches!(
        sync.tree.insert(b"k2", b"v"),
        Err(StoreError::Fenced(_))
    ));
    assert!(matches!(sync.tree.remove(b"k"), Err(StoreError::Fenced(_))));
    let fingerprint = Fingerprint::of(&["x"]);
    assert!(sync.delivered.reset(fingerprint).is_err());
    // Nothing of the refused writes is there; what was written under the lease is.
    let (states, _) = ledger.sync("s").unwrap().delivered.all().unwrap();
    assert_eq!(states.keys().collect::<Vec<_>>(), ["before"]);
    assert_eq!(
        ledger.sync("s").unwrap().tree.get(b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(ledger.sync("s").unwrap().tree.get(b"k2").unwrap(), None);
}

/// Rows the database holds but this reader did not write as they are (a hash cut short,
/// a fingerprint of another length) are an error naming what and where, never guessed.
#[test]
fn damaged_rows_are_named_not_guessed() {
    let Some(pg) = Postgres::start() else { return };
    let ledger = Ledger::on_database(db(&pg), Access::Exclusive).unwrap();
    let sync = ledger.sync("s").unwrap();
    sync.delivered
        .append(&[delivery("fine", 1, None, 1)])
        .unwrap();
    let admin = db(&pg);
    admin
        .call(|c| {
            Ok(c.batch_execute(
                "insert into sluice_delivered (sync, key, hash, attempts, at_ms, key_hash) \
                 values ('s', 'short', '\\x010203', 1, 1, 1)",
            )?)
        })
        .unwrap();
    let err = sync.delivered.all().unwrap_err().to_string();
    assert!(
        err.contains("`short`") && err.contains("3 bytes, not 16"),
        "{err}"
    );
    admin
        .call(|c| {
            Ok(c.batch_execute(
                "delete from sluice_delivered where key = 'short'; \
                 insert into sluice_destinations values ('s', '\\x00')",
            )?)
        })
        .unwrap();
    let err = sync.delivered.index().err().unwrap().to_string();
    assert!(
        err.contains("sync `s`") && err.contains("1 bytes, not 16"),
        "{err}"
    );
}

/// A TCP relay to the database that, once armed, stops passing on what its client sends
/// from the next `COMMIT` on, as a worker frozen (SIGSTOP, a VM paused) between a
/// transaction's round trips would: what the session holds then stays held until the
/// connection ends.
struct FrozenAtCommit {
    port: u16,
    sockets: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FrozenAtCommit {
    fn to(pg: &Postgres) -> FrozenAtCommit {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        let target = pg
            .url
            .rsplit('@')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let target = target.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sockets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = sockets.clone();
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let arming = armed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let mut server = TcpStream::connect(&target).unwrap();
                held.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let (mut back, mut to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut back, &mut to_client);
                });
                let armed = arming.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut frozen = false;
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 {
                            return;
                        }
                        // A simple query `COMMIT`: 'Q', its length, the text.
                        frozen |= armed.load(std::sync::atomic::Ordering::SeqCst)
                            && buf[..n].windows(7).any(|w| w == b"COMMIT\0");
                        if !frozen && server.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FrozenAtCommit {
            port,
            sockets,
            armed,
        }
    }

    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn url(&self, pg: &Postgres) -> String {
        let user = pg.url.split('@').next().unwrap();
        format!("{user}@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for FrozenAtCommit {
    /// Ends the frozen session, as a worker's death would, so that nothing waits on it.
    fn drop(&mut self) {
        for socket in self.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A worker frozen in the middle of a fenced write holds nothing that keeps another from
/// taking its work over once the lease runs out (a takeover claims with `skip locked`, so
/// a lock on the work row left by a frozen transaction hid the row until the worker woke).
#[test]
fn a_worker_frozen_in_a_write_does_not_keep_its_work_from_being_taken_over() {
    use crate::pool::queue::{Kind, Queue};
    type Write = fn(&crate::ledger::SyncLedger);
    let writes: [(&str, Write); 3] = [
        ("a store write", |sync| {
            let _ = sync.tree.insert(b"k", b"v");
        }),
        ("a store removal", |sync| {
            let _ = sync.tree.remove(b"k");
        }),
        ("a change of destination", |sync| {
            let _ = sync.delivered.reset(Fingerprint::of(&["elsewhere"]));
        }),
    ];
    let Some(pg) = Postgres::start() else { return };
    let lease = std::time::Duration::from_millis(500);
    let other = Queue::new(std::sync::Arc::new(db(&pg)), "other".into());
    for (at, (what, write)) in writes.into_iter().enumerate() {
        let relay = FrozenAtCommit::to(&pg);
        let frozen_db = Db::connect(relay.url(&pg), "TEST_STATE_URL", "public").unwrap();
        let ledger = Ledger::on_database(frozen_db, Access::Shared).unwrap();
        let frozen = Queue::new(std::sync::Arc::new(db(&pg)), "frozen".into());
        frozen.enqueue("s", Kind::Run, 1, at as u64).unwrap();
        let claim = frozen.claim(lease).unwrap().expect("the work is due");
        let fenced = ledger.fenced(claim.fence()).unwrap();
        let sync = fenced.sync("s").unwrap();
        relay.arm();
        // The write never hears back if its transaction waits on the COMMIT held back.
        std::thread::spawn(move || write(&sync));
        std::thread::sleep(lease + std::time::Duration::from_millis(300));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let taken = loop {
            match other.claim(lease).unwrap() {
                Some(taken) => break Some(taken),
                None if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                None => break None,
            }
        };
        let taken = taken.unwrap_or_else(|| {
            panic!("{what}: the work of the frozen worker could not be taken over")
        });
        assert_eq!(taken.id, claim.id, "{what}");
        assert_eq!(taken.generation, claim.generation + 1, "{what}");
        other.finish(&taken, None).unwrap();
        drop(relay);
    }
}
