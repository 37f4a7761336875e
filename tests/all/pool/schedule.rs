//! A schedule served by two workers: each due run happens once.

use super::*;

/// The UTC time of day `after` from now, as `HH:MM:SS`.
fn time_of_day_in(after: Duration) -> String {
    let at = SystemTime::now() + after;
    let seconds = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_run_each_scheduled_run_once() {
    let Some(pg) = Postgres::start() else { return };
    let dest = common::accepting().await;
    let schema = "pool_schedule";
    let started = SystemTime::now();
    let (first, second) = (
        time_of_day_in(Duration::from_secs(5)),
        time_of_day_in(Duration::from_secs(9)),
    );
    let setup = pool_scenario(&dest.base_url(), common::contacts(200), 2, schema)
        .sync(&format!("schedule = [\"{first}\", \"{second}\"]"))
        .setup();
    let config = setup.config_path();
    let workers = [
        Worker::start(&config, &pg, "a", "10s"),
        Worker::start(&config, &pg, "b", "10s"),
    ];
    // Two due times, two partitions each.
    wait_for("both scheduled runs done", Duration::from_secs(40), || {
        let pg = &pg;
        async move {
            let rows = rows(pg, schema).await;
            rows.len() == 4 && rows.iter().all(|r| r.state == "done")
        }
    })
    .await;
    // A moment more: a run scheduled twice would show now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows = rows(&pg, schema).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let due: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.due_at).collect();
    assert_eq!(due.len(), 2, "two due times: {rows:?}");
    assert!(
        rows.iter().all(|r| r.generation == 1),
        "each claimed once: {rows:?}"
    );
    // The first run sent every record; the second found them unchanged.
    assert_eq!(dest.stats().records_received, 200);
    assert_eq!(dest.stored().len(), 200);
    eprintln!(
        "scheduled runs done {:?} after the workers started",
        since(started)
    );
    for worker in workers {
        let log = worker.log_text();
        assert!(worker.stop().await.success(), "{log}");
    }
}
