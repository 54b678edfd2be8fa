//! The Postgres pool against a real server: transactions that end explicitly
//! on every path, reclaim of abandoned leases, faults, and a strict line of
//! waiters. Server-side state is read back from `pg_stat_activity`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally::pool::pg::{PgManager, PgPool};
use tally::pool::{Config, Pool};
use tally::protocols::pg::{Config as PgConfig, TransactionStatus};
use tally::{Nursery, Runtime};
use tally_harness::cluster::{self, Cluster};

fn runtime() -> Runtime {
    Runtime::builder().workers(2).build().unwrap()
}

fn pool(cluster: &Cluster, app: &str, size: usize, services: &Nursery) -> PgPool {
    let config: PgConfig = cluster.url(cluster::SUPERUSER).parse().unwrap();
    let manager = PgManager::new(config).application_name(app);
    Pool::new(
        manager,
        Config::named(app)
            .max_size(size)
            .wait_timeout(Duration::from_secs(5))
            .housekeeping_interval(Duration::from_millis(50)),
        services,
    )
    .unwrap()
}

fn setup(cluster: &Cluster) {
    cluster
        .psql_query("CREATE TABLE IF NOT EXISTS items (id int8 PRIMARY KEY, note text)")
        .unwrap();
}

fn row_exists(cluster: &Cluster, id: i64) -> bool {
    cluster
        .psql_query(&format!("SELECT count(*) FROM items WHERE id = {id}"))
        .unwrap()
        .trim()
        == "1"
}

/// Polls `pg_stat_activity` until every backend of `app` is idle (not idle
/// in transaction), or `limit` passes; returns how long it took.
fn all_idle_within(cluster: &Cluster, app: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        let activity = cluster.activity(app).unwrap();
        if activity.iter().all(|a| a.state == "idle") {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            eprintln!("still busy: {activity:?}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_transaction_signalled_between_insert_and_commit_rolls_back_explicitly() {
    let cluster = Cluster::start().unwrap();
    setup(&cluster);
    let rt = runtime();
    let metrics = rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let pool = pool(&cluster, "signalled", 2, &services);
        let work = Nursery::builder().name("work").build();
        let (inserted, is_inserted) = tally::channel::bounded(1);
        let pool_in_task = pool.clone();
        let task = work
            .spawn(async move {
                pool_in_task
                    .transaction(async |tx| {
                        tx.execute("INSERT INTO items VALUES (1, 'signalled')", &[])
                            .await?;
                        inserted.send(()).await.ok();
                        // Wait here, between INSERT and COMMIT, for the signal.
                        tally::sleep(Duration::from_secs(3600)).await;
                        Ok::<_, tally::protocols::pg::Error>(())
                    })
                    .await
            })
            .await
            .unwrap();
        is_inserted.recv().await.unwrap();
        task.cancel();
        let result = task.await.unwrap();
        assert!(result.unwrap_err().is_cancelled());
        let metrics = pool.metrics();
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
        metrics
    });
    assert_eq!(metrics.abandoned, 0);
    assert_eq!((metrics.in_use, metrics.idle), (0, 1));
    assert!(!row_exists(&cluster, 1));
    cluster.stop().unwrap();
}

#[test]
fn the_same_work_cut_by_drop_is_reclaimed_within_a_second_and_counted_abandoned() {
    let cluster = Cluster::start().unwrap();
    setup(&cluster);
    let rt = runtime();
    let (metrics, settle) = rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let pool = pool(&cluster, "dropped", 2, &services);
        let cut = tally::timeout(
            Duration::from_millis(300),
            pool.transaction(async |tx| {
                tx.execute("INSERT INTO items VALUES (2, 'dropped')", &[])
                    .await?;
                tally::sleep(Duration::from_secs(3600)).await;
                Ok::<_, tally::protocols::pg::Error>(())
            }),
        )
        .await;
        assert!(cut.is_err());
        let start = Instant::now();
        assert!(pool.settle(Duration::from_secs(1)).await);
        let settle = start.elapsed();
        let metrics = pool.metrics();
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
        (metrics, settle)
    });
    assert!(settle < Duration::from_secs(1), "{settle:?}");
    assert_eq!(metrics.abandoned, 1);
    assert_eq!(metrics.abandoned_sites.len(), 1);
    assert_eq!(metrics.abandoned_sites[0].location.file(), file!());
    assert_eq!((metrics.in_use, metrics.discarded_broken), (0, 0));
    assert!(!row_exists(&cluster, 2));
    cluster.stop().unwrap();
}

#[test]
fn drop_cut_work_leaves_no_backend_idle_in_transaction() {
    let cluster = Cluster::start().unwrap();
    setup(&cluster);
    let rt = runtime();
    let services = rt.block_on(async { Nursery::builder().name("services").build() });
    let pool = rt.block_on(async { pool(&cluster, "server-view", 2, &services) });
    rt.block_on(async {
        let work = Nursery::builder()
            .name("work")
            .drop_wait(Duration::from_millis(50))
            .build();
        let pool_in_task = pool.clone();
        let (inserted, is_inserted) = tally::channel::bounded(1);
        let _task = work
            .spawn(async move {
                let _ = pool_in_task
                    .transaction(async |tx| {
                        tx.execute("INSERT INTO items VALUES (3, 'cut by drop')", &[])
                            .await?;
                        inserted.send(()).await.ok();
                        std::future::pending::<()>().await;
                        Ok::<_, tally::protocols::pg::Error>(())
                    })
                    .await;
            })
            .await
            .unwrap();
        // Wait until it is inside its transaction, however slow the machine.
        is_inserted.recv().await.unwrap();
        // The work is in its transaction: drop its nursery, which drops the
        // task without a signal (a shutdown would signal first, and the scope
        // would then roll back by itself).
        drop(work);
        assert!(pool.settle(Duration::from_secs(1)).await);
    });
    let took = all_idle_within(&cluster, "server-view", Duration::from_secs(1));
    assert!(took.is_some(), "a backend stayed idle in transaction");
    let metrics = pool.metrics();
    assert_eq!(metrics.abandoned, 1);
    assert!(!row_exists(&cluster, 3));
    rt.block_on(pool.close(Duration::from_secs(1)));
    cluster.stop().unwrap();
}

#[test]
fn a_panic_inside_a_transaction_rolls_back_and_reaches_the_handle_and_a_bare_lease_is_reclaimed() {
    std::panic::set_hook(Box::new(|_| {}));
    let cluster = Cluster::start().unwrap();
    setup(&cluster);
    let rt = runtime();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let pool = pool(&cluster, "panics", 2, &services);
        let work = Nursery::new();
        let pool_in_task = pool.clone();
        let task = work
            .spawn(async move {
                let _ = pool_in_task
                    .transaction(async |tx| {
                        tx.execute("INSERT INTO items VALUES (4, 'panics')", &[])
                            .await?;
                        if tx.connection().transaction_status() == TransactionStatus::InTransaction
                        {
                            panic!("poisoned event");
                        }
                        Ok::<_, tally::protocols::pg::Error>(())
                    })
                    .await;
            })
            .await
            .unwrap();
        let error = task.await.unwrap_err();
        assert_eq!(error.panic_message(), Some("poisoned event"));
        assert_eq!(pool.metrics().abandoned, 0);
        assert!(pool.settle(Duration::from_secs(1)).await);

        let pool_in_task = pool.clone();
        let bare = work
            .spawn(async move {
                let mut lease = pool_in_task.acquire().await.unwrap();
                lease.batch_execute("BEGIN").await.unwrap();
                lease
                    .execute("INSERT INTO items VALUES (5, 'bare')", &[])
                    .await
                    .unwrap();
                if lease.transaction_status() == TransactionStatus::InTransaction {
                    panic!("holding a bare lease");
                }
                lease.release().await;
            })
            .await
            .unwrap();
        assert!(bare.await.unwrap_err().is_panic());
        assert!(pool.settle(Duration::from_secs(1)).await);
        let metrics = pool.metrics();
        assert_eq!(
            (metrics.abandoned, metrics.in_use, metrics.idle),
            (1, 0, metrics.size)
        );
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
    });
    assert!(!row_exists(&cluster, 4));
    assert!(!row_exists(&cluster, 5));
    cluster.stop().unwrap();
}

#[test]
fn dropping_a_transaction_at_every_poll_point_leaves_the_next_lease_idle() {
    let cluster = Cluster::start().unwrap();
    setup(&cluster);
    let rt = runtime();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let pool = pool(&cluster, "poll-points", 1, &services);
        for polls in 0..40usize {
            let id = 100 + polls as i64;
            {
                let tx = pool.transaction(async |tx| {
                    tx.execute("INSERT INTO items VALUES ($1, 'cut')", &[&id])
                        .await?;
                    tx.execute("UPDATE items SET note = 'cut twice' WHERE id = $1", &[&id])
                        .await?;
                    Ok::<_, tally::protocols::pg::Error>(())
                });
                futures_lite::pin!(tx);
                for _ in 0..polls {
                    if futures_lite::future::poll_once(&mut tx).await.is_some() {
                        break;
                    }
                }
            }
            let mut lease = pool.acquire().await.unwrap();
            assert_eq!(
                lease.transaction_status(),
                TransactionStatus::Idle,
                "after {polls} polls"
            );
            assert!(lease.is_idle(), "after {polls} polls: {:?}", &*lease);
            let count = lease
                .query_one(
                    "SELECT count(*) FROM items WHERE note = 'cut twice' AND id = $1",
                    &[&id],
                )
                .await
                .unwrap();
            let committed = count.get::<i64>(0).unwrap();
            lease.release().await;
            // Either it committed whole or not at all.
            let present = lease_free_count(&cluster, id);
            assert_eq!(present, committed, "after {polls} polls");
        }
        assert!(pool.settle(Duration::from_secs(1)).await);
        assert_eq!(pool.metrics().in_use, 0);
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
    });
    cluster.stop().unwrap();
}

fn lease_free_count(cluster: &Cluster, id: i64) -> i64 {
    cluster
        .psql_query(&format!("SELECT count(*) FROM items WHERE id = {id}"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn terminated_backends_and_a_restart_are_discarded_and_replaced_never_handed_out_twice() {
    let cluster = Cluster::start().unwrap();
    setup(&cluster);
    let rt = runtime();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let pool = pool(&cluster, "faults", 4, &services);
        // Warm four connections, then kill them all while idle.
        let mut leases = Vec::new();
        for _ in 0..4 {
            leases.push(pool.acquire().await.unwrap());
        }
        let pids: Vec<i32> = leases.iter().map(|l| l.backend_pid()).collect();
        for lease in leases {
            lease.release().await;
        }
        let killed = tally::unblock({
            let url = cluster.url(cluster::SUPERUSER);
            move || {
                std::process::Command::new("psql")
                    .args([url.as_str(), "-Atc", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'faults'"])
                    .output()
            }
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&killed.stdout).trim(), "4");
        tally::sleep(Duration::from_millis(100)).await;
        // Every query on a lease from now on works: a dead one is either
        // caught before it is handed out or fails once and is discarded.
        let mut failures = 0;
        let mut seen_dead = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut lease = pool.acquire().await.unwrap();
            let pid = lease.backend_pid();
            match lease.execute("SELECT 1", &[]).await {
                Ok(_) => lease.release().await,
                Err(e) => {
                    assert!(e.is_broken(), "{e}");
                    assert!(pids.contains(&pid));
                    assert!(seen_dead.insert(pid), "backend {pid} handed out twice after it died");
                    failures += 1;
                    lease.discard_broken().await;
                }
            }
        }
        assert!(failures <= 4);

        // A leased connection killed mid-use.
        let mut lease = pool.acquire().await.unwrap();
        let pid = lease.backend_pid();
        let url = cluster.url(cluster::SUPERUSER);
        let kill = tally::unblock(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::process::Command::new("psql")
                .args([url.as_str(), "-Atc", &format!("SELECT pg_terminate_backend({pid})")])
                .output()
        });
        let (result, _) = futures_lite::future::zip(lease.execute("SELECT pg_sleep(5)", &[]), kill).await;
        assert!(result.unwrap_err().is_broken());
        // Released as if nothing happened: the recycle sees it broken and closes it.
        lease.release().await;

        // A restart under load.
        let load = Nursery::builder().name("load").build();
        let ok = Arc::new(AtomicUsize::new(0));
        for _ in 0..4 {
            let pool = pool.clone();
            let ok = ok.clone();
            let _worker = load
                .spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(3);
                    while Instant::now() < deadline {
                        if let Ok(mut lease) = pool.acquire().await {
                            match lease.execute("SELECT 1", &[]).await {
                                Ok(_) => {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                    lease.release().await;
                                }
                                Err(_) => lease.discard_broken().await,
                            }
                        }
                        tally::sleep(Duration::from_millis(2)).await;
                    }
                })
                .await
                .unwrap();
        }
        tally::sleep(Duration::from_millis(500)).await;
        // Blocks this (non-worker) thread only; the load runs on the workers.
        cluster.restart().unwrap();
        load.join().await;
        assert!(ok.load(Ordering::Relaxed) > 100);
        assert!(pool.settle(Duration::from_secs(1)).await);
        let metrics = pool.metrics();
        assert_eq!(metrics.in_use, 0);
        assert_eq!(metrics.idle, metrics.size);
        assert!(metrics.discarded_broken >= 4, "{metrics:?}");
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
    });
    cluster.stop().unwrap();
}

#[test]
fn a_thousand_acquirers_on_a_pool_of_eight_keep_their_order_and_none_waits_forever() {
    let cluster = Cluster::start().unwrap();
    // One worker: the acquirers run, and so join the line, in spawn order.
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let config: PgConfig = cluster.url(cluster::SUPERUSER).parse().unwrap();
        let pool = Pool::new(
            PgManager::new(config).application_name("line"),
            Config::named("line")
                .max_size(8)
                .wait_timeout(Duration::from_millis(50)),
            &services,
        )
        .unwrap();
        // Hold all eight, so that every acquirer below has to wait in line.
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(pool.acquire().await.unwrap());
        }
        let served = Arc::new(Mutex::new(Vec::new()));
        let outcomes = Arc::new(Mutex::new((0usize, 0usize)));
        let crowd = Nursery::builder().name("crowd").cap(1000).build();
        for i in 0..1000usize {
            let pool = pool.clone();
            let served = served.clone();
            let outcomes = outcomes.clone();
            let _acquirer = crowd
                .spawn(async move {
                    match pool.acquire().await {
                        Ok(mut lease) => {
                            served.lock().unwrap().push(i);
                            let _ = lease.execute("SELECT 1", &[]).await;
                            lease.release().await;
                            outcomes.lock().unwrap().0 += 1;
                        }
                        Err(e) => {
                            assert!(e.is_timeout(), "{e}");
                            assert_eq!(e.timeout_stage(), Some(tally::pool::Stage::Wait));
                            assert!(e.waited().unwrap() >= Duration::from_millis(50));
                            outcomes.lock().unwrap().1 += 1;
                        }
                    }
                })
                .await
                .unwrap();
        }
        while pool.metrics().waiters < 1000 {
            tally::sleep(Duration::from_millis(1)).await;
        }
        for lease in held {
            lease.release().await;
        }
        let stats = crowd.join().await;
        assert_eq!(stats.completed, 1000);
        let (ok, timed_out) = *outcomes.lock().unwrap();
        assert_eq!(ok + timed_out, 1000);
        assert!(ok >= 8);
        assert!(pool.settle(Duration::from_secs(1)).await);
        let metrics = pool.metrics();
        assert_eq!((metrics.in_use, metrics.waiters), (0, 0));
        assert_eq!(metrics.acquire_timeouts as usize, timed_out);
        assert!(metrics.size <= 8);
        // FIFO: every one of them waited in line; service order is arrival order.
        let served = served.lock().unwrap().clone();
        let mut sorted = served.clone();
        sorted.sort_unstable();
        let inversions = served.iter().zip(&sorted).filter(|(a, b)| a != b).count();
        assert_eq!(
            inversions,
            0,
            "served out of order: {:?}",
            &served[..served.len().min(40)]
        );
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
    });
    cluster.stop().unwrap();
}

#[test]
fn after_ten_seconds_of_load_every_connection_is_idle_within_a_second_of_the_last_query() {
    let cluster = Cluster::start().unwrap();
    setup(&cluster);
    let rt = runtime();
    let pool = rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let pool = pool(&cluster, "sustained", 8, &services);
        std::mem::forget(services);
        pool
    });
    let done = Arc::new(AtomicUsize::new(0));
    let load_for = Duration::from_secs(10);
    let (elapsed, per_second) = rt.block_on(async {
        let load = Nursery::builder().name("load").build();
        let per_second = Arc::new(Mutex::new(vec![0u64; 11]));
        let start = Instant::now();
        for worker in 0..16i64 {
            let pool = pool.clone();
            let done = done.clone();
            let per_second = per_second.clone();
            let _worker = load
                .spawn(async move {
                    let mut n = 0i64;
                    while start.elapsed() < load_for {
                        let id = 1_000_000 * (worker + 1) + n;
                        n += 1;
                        let stored = pool
                            .transaction(async |tx| {
                                tx.execute("INSERT INTO items VALUES ($1, 'load') ON CONFLICT (id) DO NOTHING", &[&id]).await
                            })
                            .await;
                        if stored.is_ok() {
                            done.fetch_add(1, Ordering::Relaxed);
                            let second = start.elapsed().as_secs() as usize;
                            per_second.lock().unwrap()[second.min(10)] += 1;
                        }
                    }
                })
                .await
                .unwrap();
        }
        load.join().await;
        let v = per_second.lock().unwrap().clone();
        (start.elapsed(), v)
    });
    let last_query = Instant::now();
    let idle = all_idle_within(&cluster, "sustained", Duration::from_secs(1));
    let total = done.load(Ordering::Relaxed);
    println!(
        "sustained load: {total} transactions in {elapsed:?} ({:.0}/s), best second {} tx/s; all idle {:?} after the last query",
        total as f64 / elapsed.as_secs_f64(),
        per_second.iter().max().unwrap(),
        idle
    );
    assert!(idle.is_some(), "connections were not all idle within 1 s");
    assert!(last_query.elapsed() < Duration::from_secs(2));
    assert!(total > 1000);
    let metrics = pool.metrics();
    assert_eq!((metrics.in_use, metrics.abandoned), (0, 0));
    rt.block_on(pool.close(Duration::from_secs(1)));
    cluster.stop().unwrap();
}

#[test]
fn a_transient_failure_is_retried_as_a_whole_transaction_and_a_permanent_one_is_not() {
    let cluster = Cluster::start().unwrap();
    setup(&cluster);
    let rt = runtime();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let pool = pool(&cluster, "retry", 2, &services);
        let attempts = Arc::new(AtomicUsize::new(0));
        let seen = attempts.clone();
        let stored = pool
            .transaction_with_retry(tally::pool::pg::Retry::default(), async |tx| {
                tx.execute("INSERT INTO items VALUES (900, 'retried')", &[])
                    .await?;
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    // A serialization failure, as the server reports it.
                    tx.execute(
                        "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$",
                        &[],
                    )
                    .await?;
                }
                Ok::<_, tally::protocols::pg::Error>("stored")
            })
            .await
            .unwrap();
        assert_eq!(stored, "stored");
        assert_eq!(attempts.load(Ordering::SeqCst), 2);

        let tries = Arc::new(AtomicUsize::new(0));
        let counted = tries.clone();
        let e = pool
            .transaction_with_retry(tally::pool::pg::Retry::default(), async |tx| {
                counted.fetch_add(1, Ordering::SeqCst);
                tx.execute("INSERT INTO no_such_table VALUES (1)", &[])
                    .await
            })
            .await
            .unwrap_err();
        assert_eq!(e.failed().and_then(|e| e.code()), Some("42P01"));
        assert_eq!(
            tries.load(Ordering::SeqCst),
            1,
            "a permanent error is not retried"
        );

        // The explicit Transaction value: commit and rollback.
        let mut tx = pool.begin().await.unwrap();
        tx.execute("INSERT INTO items VALUES (901, 'committed')", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        tx.execute("INSERT INTO items VALUES (902, 'rolled back')", &[])
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let m = pool.metrics();
        assert_eq!((m.in_use, m.abandoned), (0, 0));
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
    });
    assert!(row_exists(&cluster, 900));
    assert!(row_exists(&cluster, 901));
    assert!(!row_exists(&cluster, 902));
    cluster.stop().unwrap();
}

#[test]
fn a_reset_on_return_clears_session_state_and_the_statement_cache_but_keeps_the_startup_settings() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let config: PgConfig = cluster.url(cluster::SUPERUSER).parse().unwrap();
        let pool = Pool::new(
            PgManager::new(config)
                .application_name("reset")
                .idle_in_transaction_timeout(Duration::from_secs(7))
                .reset_on_return(true),
            Config::named("reset").max_size(1),
            &services,
        )
        .unwrap();
        let mut lease = pool.acquire().await.unwrap();
        lease
            .batch_execute("SET search_path = pg_catalog")
            .await
            .unwrap();
        lease.query("SELECT $1::int8", &[&1i64]).await.unwrap();
        assert_eq!(lease.cached_statements(), 1);
        lease.release().await;
        let mut lease = pool.acquire().await.unwrap();
        assert_eq!(lease.cached_statements(), 0);
        let rows = lease
            .simple_query(
                "SHOW search_path; SHOW idle_in_transaction_session_timeout; SHOW application_name",
            )
            .await
            .unwrap();
        assert_eq!(rows[0].rows[0].get(0), Some("\"$user\", public"));
        assert_eq!(rows[1].rows[0].get(0), Some("7s"));
        assert_eq!(rows[2].rows[0].get(0), Some("reset"));
        lease.release().await;
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
    });
    cluster.stop().unwrap();
}
