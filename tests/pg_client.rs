//! The PostgreSQL client against a real server: a throwaway cluster of the
//! test's own (tally-harness), started from the installed server binaries.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tally::protocols::pg::{
    Config, Connection, Date, Json, Jsonb, Pipeline, StepResult, Timestamp, TransactionStatus, Uuid,
};
use tally::Runtime;
use tally_harness::cluster::{self as users, Cluster};

fn runtime() -> Runtime {
    Runtime::builder().workers(2).build().unwrap()
}

fn config(cluster: &Cluster, application_name: &str) -> Config {
    let config: Config = cluster.url(users::SUPERUSER).parse().unwrap();
    config.application_name(application_name)
}

#[test]
fn every_authentication_method_logs_in_and_a_wrong_password_is_refused() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    rt.block_on(async {
        for user in [
            users::SUPERUSER,
            users::MD5_USER,
            users::SCRAM_USER,
            users::CLEAR_USER,
        ] {
            let config: Config = cluster.url(user).parse().unwrap();
            let mut conn = Connection::connect(&config)
                .await
                .unwrap_or_else(|e| panic!("{user}: {e}"));
            let row = conn
                .query_one("SELECT current_user::text", &[])
                .await
                .unwrap();
            assert_eq!(row.get::<&str>(0).unwrap(), user);
            conn.close().await.unwrap();
        }
        for user in [users::MD5_USER, users::SCRAM_USER, users::CLEAR_USER] {
            let config: Config = cluster
                .url(user)
                .parse::<Config>()
                .unwrap()
                .password("wrong");
            let e = Connection::connect(&config).await.unwrap_err();
            assert!(e.is_auth(), "{user}: {e}");
            assert_eq!(e.code(), Some("28P01"), "{user}: {e}");
        }
        let no_password = Config::new()
            .host("127.0.0.1")
            .port(cluster.port())
            .user(users::SCRAM_USER)
            .dbname(users::DATABASE);
        let e = Connection::connect(&no_password).await.unwrap_err();
        assert!(e.is_auth(), "{e}");

        // The same over the Unix socket, in the key=value form.
        let config: Config = cluster.socket_key_value(users::SCRAM_USER).parse().unwrap();
        let mut conn = Connection::connect(&config).await.unwrap();
        assert_eq!(
            conn.query_one("SELECT 7::int4", &[])
                .await
                .unwrap()
                .get::<i32>(0)
                .unwrap(),
            7
        );
        conn.close().await.unwrap();
    });
    cluster.stop().unwrap();
}

#[test]
fn a_session_the_server_refuses_for_want_of_tls_gets_a_clear_error() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    // A server that admits TCP sessions only over TLS.
    std::fs::write(
        cluster.data_dir().join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    cluster.psql_query("SELECT pg_reload_conf()").unwrap();
    let config: Config = cluster.url(users::SUPERUSER).parse().unwrap();
    let e = rt.block_on(Connection::connect(&config)).unwrap_err();
    assert!(e.is_tls_required(), "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
    cluster.stop().unwrap();
}

#[test]
fn every_supported_type_round_trips_with_nulls_unicode_and_extremes() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut conn = Connection::connect(&config(&cluster, "types"))
            .await
            .unwrap();
        let uuid: Uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".parse().unwrap();
        let date = Date::from_ymd(1999, 1, 4).unwrap();
        let instant = UNIX_EPOCH + Duration::from_micros(915_465_600_123_456);
        let unicode = "Zürich · 東京 · 🦀 · \u{202e}";
        let big_text = "x".repeat(10 << 20);
        let bytes: Vec<u8> = (0..=255).collect();
        let row = conn
            .query_one(
                "SELECT $1::bool, $2::int2, $3::int4, $4::int8, $5::float4, $6::float8, $7::text, \
                 $8::varchar, $9::bytea, $10::uuid, $11::date, $12::timestamptz, $13::json, \
                 $14::jsonb, $15::text, $16::int8",
                &[
                    &true,
                    &i16::MIN,
                    &i32::MAX,
                    &i64::MIN,
                    &f32::MAX,
                    &f64::MIN_POSITIVE,
                    &unicode,
                    &"varchar",
                    &bytes,
                    &uuid,
                    &date,
                    &instant,
                    &Json(r#"{"a": [1, 2]}"#),
                    &Jsonb(r#"{"b": null}"#),
                    &big_text,
                    &None::<i64>,
                ],
            )
            .await
            .unwrap();
        assert!(row.get::<bool>(0).unwrap());
        assert_eq!(row.get::<i16>(1).unwrap(), i16::MIN);
        assert_eq!(row.get::<i32>(2).unwrap(), i32::MAX);
        assert_eq!(row.get::<i64>(3).unwrap(), i64::MIN);
        assert_eq!(row.get::<f32>(4).unwrap(), f32::MAX);
        assert_eq!(row.get::<f64>(5).unwrap(), f64::MIN_POSITIVE);
        assert_eq!(row.get::<&str>(6).unwrap(), unicode);
        assert_eq!(row.get::<String>(7).unwrap(), "varchar");
        assert_eq!(row.get::<Vec<u8>>(8).unwrap(), bytes);
        assert_eq!(row.get::<Uuid>(9).unwrap(), uuid);
        assert_eq!(row.get::<Date>(10).unwrap(), date);
        assert_eq!(row.get::<SystemTime>(11).unwrap(), instant);
        assert_eq!(row.get::<Json<String>>(12).unwrap().0, r#"{"a": [1, 2]}"#);
        assert_eq!(row.get::<Json<&str>>(13).unwrap().0, r#"{"b": null}"#);
        assert_eq!(row.get::<&str>(14).unwrap().len(), 10 << 20);
        assert_eq!(row.get::<Option<i64>>(15).unwrap(), None);
        // NULL where a value is required, and the wrong type: typed errors.
        assert!(row.get::<i64>(15).unwrap_err().is_type());
        assert!(row.get::<String>(3).unwrap_err().is_type());
        assert!(row.get::<i64>(99).unwrap_err().is_type());

        // Every type's NULL, and the infinities.
        let row = conn
            .query_one(
                "SELECT $1::bool, $2::text, $3::bytea, $4::uuid, $5::date, $6::timestamptz, \
                 'infinity'::timestamptz, '-infinity'::date, 'NaN'::float8",
                &[
                    &None::<bool>,
                    &None::<String>,
                    &None::<Vec<u8>>,
                    &None::<Uuid>,
                    &None::<Date>,
                    &None::<Timestamp>,
                ],
            )
            .await
            .unwrap();
        for i in 0..6 {
            assert_eq!(row.raw(i).unwrap(), None, "column {i}");
        }
        assert_eq!(row.get::<Timestamp>(6).unwrap(), Timestamp(i64::MAX));
        assert_eq!(row.get::<Date>(7).unwrap(), Date(i32::MIN));
        assert!(row.get::<f64>(8).unwrap().is_nan());
        assert!(row.get::<SystemTime>(6).unwrap_err().is_type());

        // A type the server cannot take for a column: its error, and the
        // connection goes on.
        conn.batch_execute("CREATE TEMP TABLE j (doc jsonb)")
            .await
            .unwrap();
        let e = conn
            .execute("INSERT INTO j VALUES ($1)", &[&42i64])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("42804"), "{e}");
        assert_eq!(
            conn.execute("INSERT INTO j VALUES ($1)", &[&Jsonb("[]")])
                .await
                .unwrap(),
            1
        );
        conn.close().await.unwrap();
    });
    cluster.stop().unwrap();
}

#[test]
fn an_error_mid_pipeline_skips_its_segment_and_the_connection_goes_on() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut conn = Connection::connect(&config(&cluster, "pipeline"))
            .await
            .unwrap();
        conn.batch_execute("CREATE TABLE t (id int8 PRIMARY KEY, note text)")
            .await
            .unwrap();

        let mut tx = Pipeline::new();
        tx.execute("BEGIN", &[]).unwrap();
        tx.execute("INSERT INTO t VALUES ($1, $2)", &[&1i64, &"one"])
            .unwrap();
        tx.execute("COMMIT", &[]).unwrap();
        tx.sync();
        let results = conn.pipeline(&tx).await.unwrap();
        assert!(results.iter().all(StepResult::is_ok), "{results:?}");
        assert_eq!(results[1].count(), 1);
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);

        let mut bad = Pipeline::new();
        bad.execute("BEGIN", &[]).unwrap();
        bad.execute("INSERT INTO t VALUES ($1, $2)", &[&2i64, &"two"])
            .unwrap();
        bad.execute("INSERT INTO t VALUES ($1, $2)", &[&1i64, &"duplicate"])
            .unwrap();
        bad.execute("INSERT INTO t VALUES ($1, $2)", &[&3i64, &"three"])
            .unwrap();
        bad.execute("COMMIT", &[]).unwrap();
        bad.sync();
        bad.query("SELECT count(*) FROM t", &[]).unwrap();
        let results = conn.pipeline(&bad).await.unwrap();
        assert!(results[0].is_ok() && results[1].is_ok());
        assert_eq!(results[2].error().unwrap().code, "23505");
        assert!(matches!(results[3], StepResult::Skipped));
        assert!(matches!(results[4], StepResult::Skipped));
        // The segment after the Sync ran, inside the failed transaction.
        assert_eq!(results[5].error().unwrap().code, "25P02");
        assert_eq!(conn.transaction_status(), TransactionStatus::Failed);

        conn.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
        let count = conn.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
        assert_eq!(count.get::<i64>(0).unwrap(), 1);
        conn.close().await.unwrap();
    });
    cluster.stop().unwrap();
}

#[test]
fn pg_terminate_backend_during_a_query_gives_a_connection_lost_error_without_a_hang() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    let mut conn = rt
        .block_on(Connection::connect(&config(&cluster, "victim")))
        .unwrap();
    let pid = conn.backend_pid();
    let start = Instant::now();
    let (result, terminated) = rt.block_on(async {
        let query = conn.query("SELECT pg_sleep(30)", &[]);
        let kill = async {
            tally::sleep(Duration::from_millis(200)).await;
            tally::unblock({
                let url = cluster.url(users::SUPERUSER);
                move || {
                    std::process::Command::new("psql")
                        .args([
                            url.as_str(),
                            "-Atc",
                            &format!("SELECT pg_terminate_backend({pid})"),
                        ])
                        .output()
                }
            })
            .await
            .unwrap()
            .unwrap()
        };
        let (result, output) = futures_lite::future::zip(query, kill).await;
        (
            result,
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        )
    });
    assert_eq!(terminated, "t");
    let e = result.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert!(e.is_broken(), "{e}");
    assert_eq!(e.code(), Some("57P01"), "{e}");
    assert!(e.is_transient());
    assert!(conn.is_broken());
    let again = rt.block_on(conn.query("SELECT 1", &[])).unwrap_err();
    assert!(again.is_broken(), "{again}");
    cluster.stop().unwrap();
}

#[test]
fn a_server_restart_makes_the_connection_report_itself_broken() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    let mut conn = rt
        .block_on(Connection::connect(&config(&cluster, "restart")))
        .unwrap();
    assert_eq!(rt.block_on(conn.execute("SELECT 1", &[])).unwrap(), 1);
    cluster.restart().unwrap();
    let e = rt.block_on(conn.execute("SELECT 1", &[])).unwrap_err();
    assert!(e.is_broken(), "{e}");
    assert!(conn.is_broken());
    // A fresh connection works.
    let mut fresh = rt
        .block_on(Connection::connect(&config(&cluster, "restart")))
        .unwrap();
    assert_eq!(rt.block_on(fresh.execute("SELECT 1", &[])).unwrap(), 1);
    rt.block_on(fresh.close()).unwrap();
    cluster.stop().unwrap();
}

#[test]
fn statement_timeout_and_a_client_timeout_with_cancel_leave_the_connection_usable() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut conn = Connection::connect(&config(&cluster, "timeouts"))
            .await
            .unwrap();
        conn.batch_execute("SET statement_timeout = '100ms'")
            .await
            .unwrap();
        let e = conn.execute("SELECT pg_sleep(5)", &[]).await.unwrap_err();
        assert_eq!(e.code(), Some("57014"), "{e}");
        assert!(conn.is_idle());
        conn.batch_execute("SET statement_timeout = 0")
            .await
            .unwrap();

        conn.set_query_timeout(Some(Duration::from_millis(200)));
        let start = Instant::now();
        let e = conn.execute("SELECT pg_sleep(30)", &[]).await.unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(conn.is_idle(), "{conn:?}");
        assert_eq!(
            conn.query_one("SELECT 5::int8", &[])
                .await
                .unwrap()
                .get::<i64>(0)
                .unwrap(),
            5
        );
        // Quick queries under the timeout are not disturbed by the old cancel.
        for i in 0..50i64 {
            let row = conn.query_one("SELECT $1::int8", &[&i]).await.unwrap();
            assert_eq!(row.get::<i64>(0).unwrap(), i);
        }

        // A cancel from another task, through the token.
        conn.set_query_timeout(None);
        let token = conn.cancel_token();
        let nursery = tally::Nursery::new();
        let _canceller = nursery
            .spawn(async move {
                tally::sleep(Duration::from_millis(200)).await;
                token.cancel().await
            })
            .await
            .unwrap();
        let e = conn.execute("SELECT pg_sleep(30)", &[]).await.unwrap_err();
        assert_eq!(e.code(), Some("57014"), "{e}");
        assert!(conn.is_idle());
        nursery.join().await;
        conn.close().await.unwrap();
    });
    // The backend leaves once it has read the Terminate: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut activity = cluster.activity("timeouts").unwrap();
    while !activity.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        activity = cluster.activity("timeouts").unwrap();
    }
    assert!(activity.is_empty(), "{activity:?}");
    cluster.stop().unwrap();
}

#[test]
fn a_query_dropped_at_every_poll_point_leaves_a_connection_that_knows_and_recovers() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut conn = Connection::connect(&config(&cluster, "dropped"))
            .await
            .unwrap();
        conn.batch_execute("CREATE TABLE d (n int8)").await.unwrap();
        let mut saw_out_of_step = false;
        for polls in 0..20 {
            {
                let query = conn.query("SELECT n FROM generate_series(1, 20000) n", &[]);
                futures_lite::pin!(query);
                for _ in 0..polls {
                    if futures_lite::future::poll_once(&mut query).await.is_some() {
                        break;
                    }
                }
            }
            if conn.is_out_of_step() {
                saw_out_of_step = true;
                let e = conn.query("SELECT 1", &[]).await.unwrap_err();
                assert!(e.is_out_of_step(), "{e}");
                conn.recover().await.unwrap();
            }
            assert!(conn.is_idle(), "after {polls} polls: {conn:?}");
            let row = conn.query_one("SELECT 41::int8 + 1", &[]).await.unwrap();
            assert_eq!(row.get::<i64>(0).unwrap(), 42);
        }
        assert!(saw_out_of_step);
        conn.close().await.unwrap();
    });
    cluster.stop().unwrap();
}

#[test]
fn a_thousand_sequential_transactions_leave_the_session_idle() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    let conn = rt.block_on(async {
        let mut conn = Connection::connect(&config(&cluster, "thousand"))
            .await
            .unwrap();
        conn.batch_execute("CREATE TABLE e (id int8 PRIMARY KEY)")
            .await
            .unwrap();
        for id in 0..1000i64 {
            let mut tx = Pipeline::new();
            tx.execute("BEGIN", &[]).unwrap();
            tx.execute("INSERT INTO e VALUES ($1)", &[&id]).unwrap();
            tx.execute("COMMIT", &[]).unwrap();
            let results = conn.pipeline(&tx).await.unwrap();
            assert!(results.iter().all(StepResult::is_ok), "{results:?}");
        }
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
        conn
    });
    let activity = cluster.activity("thousand").unwrap();
    assert_eq!(activity.len(), 1, "{activity:?}");
    assert_eq!(activity[0].state, "idle");
    assert_eq!(
        cluster.psql_query("SELECT count(*) FROM e").unwrap().trim(),
        "1000"
    );
    rt.block_on(conn.close()).unwrap();
    cluster.stop().unwrap();
}

#[test]
fn a_message_over_the_cap_breaks_the_connection_with_a_clear_error() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let config = config(&cluster, "cap").max_message_size(64 * 1024);
        let mut conn = Connection::connect(&config).await.unwrap();
        let small = conn
            .query_one("SELECT repeat('a', 1000)", &[])
            .await
            .unwrap();
        assert_eq!(small.get::<&str>(0).unwrap().len(), 1000);
        let e = conn
            .query("SELECT repeat('a', 1000000)", &[])
            .await
            .unwrap_err();
        assert!(e.is_broken(), "{e}");
        assert!(e.to_string().contains("over the cap"), "{e}");
    });
    cluster.stop().unwrap();
}

#[test]
fn a_large_result_streams_row_by_row_and_the_cache_stays_bounded() {
    let cluster = Cluster::start().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let config = config(&cluster, "stream").statement_cache(2);
        let mut conn = Connection::connect(&config).await.unwrap();
        let mut stream = conn
            .query_stream(
                "SELECT n, repeat('r', 100) FROM generate_series(1, 200000) n",
                &[],
            )
            .await
            .unwrap();
        let mut sum = 0i64;
        let mut count = 0;
        while let Some(row) = stream.next().await {
            let row = row.unwrap();
            sum += row.get::<i32>(0).unwrap() as i64;
            count += 1;
        }
        assert_eq!((count, sum), (200_000, 200_000 * 200_001 / 2));
        assert!(conn.is_idle());

        for round in 0..3 {
            for i in 0..5i64 {
                let sql = format!("SELECT $1::int8 + {i}");
                let row = conn.query_one(&sql, &[&round]).await.unwrap();
                assert_eq!(row.get::<i64>(0).unwrap(), round + i);
            }
        }
        assert_eq!(conn.cached_statements(), 2);
        let statements = conn
            .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
            .await
            .unwrap();
        assert!(statements.get::<i64>(0).unwrap() <= 3);

        let prepared = conn.prepare("SELECT $1::int4 * 2").await.unwrap();
        assert_eq!(
            conn.query_prepared(&prepared, &[&21i32]).await.unwrap()[0]
                .get::<i32>(0)
                .unwrap(),
            42
        );
        let e = conn.query_prepared(&prepared, &[&21i64]).await.unwrap_err();
        assert!(e.is_type(), "{e}");
        conn.close_statement(prepared).await.unwrap();

        conn.batch_execute("DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$")
            .await
            .unwrap();
        let notices = conn.take_notices();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].message, "hello from the server");
        conn.close().await.unwrap();
    });
    cluster.stop().unwrap();
}

/// A "server" on a real loopback socket that answers the startup with
/// arbitrary or mutated bytes: the client returns an error (or, by chance,
/// connects) and never panics or hangs past its connect timeout.
#[test]
fn arbitrary_bytes_from_a_server_give_errors_never_panics() {
    use std::io::{Read, Write};
    let rt = runtime();
    let valid: Vec<u8> = {
        let mut v = Vec::new();
        // AuthenticationOk, a ParameterStatus, BackendKeyData, ReadyForQuery.
        v.extend_from_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
        v.extend_from_slice(b"S\0\0\0\x19client_encoding\0UTF8\0");
        v.extend_from_slice(&[b'K', 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 2]);
        v.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
        v
    };
    let mut rng = fastrand::Rng::with_seed(7);
    for case in 0..300 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let reply: Vec<u8> = if case % 2 == 0 {
            (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect()
        } else {
            let mut v = valid.clone();
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(..v.len());
                v[i] = rng.u8(..);
            }
            v.truncate(rng.usize(1..=v.len()));
            v
        };
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut startup = [0u8; 256];
            let _ = s.read(&mut startup);
            let _ = s.write_all(&reply);
            // Then close: the client must not wait forever.
        });
        let config = Config::new()
            .host("127.0.0.1")
            .port(port)
            .user("fuzz")
            .password("fuzz")
            .connect_timeout(Duration::from_secs(2));
        let outcome = rt.block_on(async {
            match Connection::connect(&config).await {
                Ok(mut conn) => conn.query("SELECT 1", &[]).await.map(|_| ()),
                Err(e) => Err(e),
            }
        });
        // Every outcome is a value: an error with a message, or success.
        if let Err(e) = outcome {
            assert!(!e.to_string().is_empty());
        }
        server.join().unwrap();
    }
}
