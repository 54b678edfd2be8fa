//! The HTTP/1.1 client against a real third-party server: nginx, started by
//! each test in the foreground on a free loopback port, with a config of its
//! own written into a temporary directory (pid, logs, temp paths and the
//! served files all inside it). nginx is killed and the directory removed at
//! the end of each test, panicking or not.
//!
//! Needs the nginx binary (`$NGINX`, `/usr/sbin/nginx`, or on `PATH`): the
//! Debian package `nginx-light` (or `nginx`); `.ci/run` installs it.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tally::protocols::http1::{Connection, Idle, Options, Origin, Request};
use tally::Runtime;

/// The static file's size.
const STATIC_LEN: usize = 100 * 1024;
/// The text file served gzipped (and so chunked).
const TEXT_LINES: usize = 2_000;

/// `n` bytes nobody would mistake for a pattern, the same every run.
fn known_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Text that gzip shrinks only so far, so its output spans several buffers
/// (and chunks).
fn known_text() -> String {
    let noise = known_bytes(TEXT_LINES * 8);
    (0..TEXT_LINES)
        .map(|i| {
            let hex: String = noise[i * 8..i * 8 + 8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("line {i:05}: {hex} the quick brown fox\n")
        })
        .collect()
}

/// CRC-32 (IEEE), as gzip's trailer holds it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn find_nginx() -> PathBuf {
    let named = std::env::var_os("NGINX").filter(|v| !v.is_empty());
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("nginx"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    named
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .chain(on_path)
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed (looked at $NGINX, /usr/sbin/nginx and PATH): \
                 install the Debian package nginx-light (apt-get install nginx-light), \
                 as .ci/run does"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn config(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    format!(
        "worker_processes 1;
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    types {{ text/plain txt; application/octet-stream bin; }}
    default_type application/octet-stream;
    keepalive_requests 1000;
    keepalive_timeout 5s;
    gzip off;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {dir}/www;
        # Which connection (nginx's serial) and its how-manyth request.
        add_header X-Connection \"$connection/$connection_requests\" always;
        # gzip drops the Content-Length: HTTP/1.1 gets it chunked, and
        # small buffers make it several chunks of 8 KiB.
        location /gzip/ {{
            gzip on;
            gzip_min_length 0;
            gzip_comp_level 1;
            gzip_types text/plain;
            gzip_buffers 2 4k;
        }}
        # No keep-alive here: every answer says Connection: close.
        location /close/ {{ keepalive_timeout 0; }}
        # An idle connection is closed after 1 s.
        location /short/ {{ keepalive_timeout 1s; }}
    }}
}}
"
    )
}

/// A running nginx and its directory; killed and removed on drop.
struct Nginx {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl Nginx {
    fn start() -> Nginx {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let bin = find_nginx();
        let dir = std::env::temp_dir().join(format!(
            "tally-nginx-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        for sub in ["tmp", "www/static", "www/gzip", "www/close", "www/short"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        fs::write(dir.join("www/static/data.bin"), known_bytes(STATIC_LEN)).unwrap();
        fs::write(dir.join("www/gzip/text.txt"), known_text()).unwrap();
        fs::write(dir.join("www/close/data.txt"), "closing\n").unwrap();
        fs::write(dir.join("www/short/data.txt"), "short\n").unwrap();
        fs::write(dir.join("www/small.txt"), "small\n").unwrap();
        // The port is free when chosen but may be taken before nginx binds
        // it: try a few.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            fs::write(dir.join("nginx.conf"), config(&dir, port)).unwrap();
            let child = Command::new(&bin)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let mut nginx = Nginx {
                dir: dir.clone(),
                port,
                child,
            };
            match nginx.wait_ready() {
                Ok(()) => return nginx,
                Err(e) => last_error = e,
            }
        }
        panic!("nginx did not start: {last_error}");
    }

    /// Waits until nginx accepts connections, or says why it exited.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                let log = fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                return Err(format!("it exited ({status}): {stderr}{log}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("it did not accept connections within 5 s".into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn origin(&self) -> Origin {
        Origin {
            host: "127.0.0.1".into(),
            port: self.port,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn header(head: &tally::protocols::http1::Head, name: &str) -> Option<String> {
    head.header(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// nginx's `$connection/$connection_requests` for a response.
fn connection_of(head: &tally::protocols::http1::Head) -> (u64, u64) {
    let value = header(head, "x-connection").expect("X-Connection on every answer");
    let (serial, requests) = value.split_once('/').expect("serial/requests");
    (serial.parse().unwrap(), requests.parse().unwrap())
}

fn runtime() -> Runtime {
    Runtime::builder().workers(1).build().unwrap()
}

/// Checks a gzip body against the text it compresses: magic bytes, and the
/// trailer's CRC-32 and length.
fn check_gzip(body: &[u8], text: &[u8]) {
    assert!(body.len() > 18, "gzip body of {} bytes", body.len());
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip magic bytes");
    let trailer = &body[body.len() - 8..];
    let crc = u32::from_le_bytes(trailer[..4].try_into().unwrap());
    let len = u32::from_le_bytes(trailer[4..].try_into().unwrap());
    assert_eq!(len as usize, text.len(), "gzip trailer's length");
    assert_eq!(crc, crc32(text), "gzip trailer's CRC-32");
}

#[test]
fn a_static_file_head_and_404_keep_one_connection_and_the_bytes_are_exact() {
    let nginx = Nginx::start();
    let expected = known_bytes(STATIC_LEN);
    runtime().block_on(async {
        let mut conn = Connection::connect(&nginx.origin(), Options::default())
            .await
            .unwrap();

        // Read whole.
        let r = conn
            .request(&Request::get("/static/data.bin"), 1 << 20)
            .await
            .unwrap();
        assert_eq!(r.head.status, 200);
        assert_eq!(r.head.version, 1);
        assert_eq!(header(&r.head, "content-length").as_deref(), Some("102400"));
        assert!(r.head.header("transfer-encoding").is_none());
        assert!(r.body[..] == expected[..], "the static file's bytes differ");
        assert!(conn.is_reusable());

        // Read piece by piece.
        let head = conn.send(&Request::get("/static/data.bin")).await.unwrap();
        assert_eq!(head.status, 200);
        let mut body = Vec::new();
        let mut pieces = 0;
        while let Some(piece) = conn.read_chunk().await.unwrap() {
            body.extend_from_slice(&piece);
            pieces += 1;
        }
        assert!(body == expected, "the static file's bytes differ");
        assert!(pieces > 1, "100 KB came in {pieces} piece");
        assert!(conn.is_reusable());

        // HEAD: the length of the body, and no body.
        let r = conn
            .request(&Request::head("/static/data.bin"), 1 << 20)
            .await
            .unwrap();
        assert_eq!(r.head.status, 200);
        assert_eq!(header(&r.head, "content-length").as_deref(), Some("102400"));
        assert!(r.body.is_empty());
        assert!(conn.is_reusable());
        assert_eq!(conn.check_idle(), Idle::Ready);

        // 404: nginx's page, well framed, so the connection stays.
        let r = conn
            .request(&Request::get("/missing"), 1 << 20)
            .await
            .unwrap();
        assert_eq!(r.head.status, 404);
        assert!(!r.body.is_empty());
        assert!(String::from_utf8_lossy(&r.body).contains("404 Not Found"));
        assert!(conn.is_reusable());

        // And the file again after all that.
        let r = conn
            .request(&Request::get("/static/data.bin"), 1 << 20)
            .await
            .unwrap();
        assert!(r.body[..] == expected[..]);
        assert_eq!(connection_of(&r.head).1, 5, "nginx saw one connection");
        assert_eq!(conn.exchanges(), 5);
        assert!(conn.is_reusable());
        conn.close();
    });
}

#[test]
fn a_gzipped_answer_comes_chunked_and_decodes_whole() {
    let nginx = Nginx::start();
    let text = known_text();
    runtime().block_on(async {
        let mut conn = Connection::connect(&nginx.origin(), Options::default())
            .await
            .unwrap();
        for round in 1..=3 {
            let r = conn
                .request(
                    &Request::get("/gzip/text.txt").header("Accept-Encoding", "gzip"),
                    1 << 20,
                )
                .await
                .unwrap();
            assert_eq!(r.head.status, 200);
            assert_eq!(
                header(&r.head, "transfer-encoding").as_deref(),
                Some("chunked"),
                "{:?}",
                r.head.headers
            );
            assert_eq!(header(&r.head, "content-encoding").as_deref(), Some("gzip"));
            assert!(r.head.header("content-length").is_none());
            check_gzip(&r.body, text.as_bytes());
            assert!(r.body.len() < text.len());
            assert!(conn.is_reusable(), "round {round}");
            assert_eq!(connection_of(&r.head).1, round);
        }
        // Without Accept-Encoding: the plain file, with its length.
        let r = conn
            .request(&Request::get("/gzip/text.txt"), 1 << 20)
            .await
            .unwrap();
        assert!(r.head.header("transfer-encoding").is_none());
        assert_eq!(
            header(&r.head, "content-length"),
            Some(text.len().to_string())
        );
        assert!(r.body[..] == *text.as_bytes());
        assert!(conn.is_reusable());
        assert_eq!(conn.check_idle(), Idle::Ready);
    });
}

#[test]
fn two_hundred_requests_of_every_kind_share_one_keep_alive_connection() {
    let nginx = Nginx::start();
    let expected = known_bytes(STATIC_LEN);
    let text = known_text();
    runtime().block_on(async {
        let mut conn = Connection::connect(&nginx.origin(), Options::default())
            .await
            .unwrap();
        let mut serial = None;
        for i in 0..200u64 {
            let (request, status) = match i % 5 {
                0 => (Request::get("/static/data.bin"), 200),
                1 => (Request::head("/static/data.bin"), 200),
                2 => (
                    Request::get("/gzip/text.txt").header("Accept-Encoding", "gzip"),
                    200,
                ),
                3 => (Request::get("/missing"), 404),
                _ => (Request::get("/small.txt"), 200),
            };
            let r = conn.request(&request, 1 << 20).await.unwrap();
            assert_eq!(r.head.status, status, "request {i}");
            match i % 5 {
                0 => assert!(r.body[..] == expected[..], "request {i}"),
                1 => assert!(r.body.is_empty(), "request {i}"),
                2 => check_gzip(&r.body, text.as_bytes()),
                3 => assert!(!r.body.is_empty()),
                _ => assert_eq!(&r.body[..], b"small\n"),
            }
            assert!(conn.is_reusable(), "request {i}");
            // nginx's side: the same connection, its (i + 1)-th request.
            let (this, requests) = connection_of(&r.head);
            assert_eq!(*serial.get_or_insert(this), this, "request {i}");
            assert_eq!(requests, i + 1);
        }
        assert_eq!(conn.exchanges(), 200);
        assert_eq!(conn.check_idle(), Idle::Ready);
    });
}

#[test]
fn connection_close_from_either_side_ends_reuse() {
    let nginx = Nginx::start();
    runtime().block_on(async {
        // nginx's side: keepalive_timeout 0 in the location.
        let mut conn = Connection::connect(&nginx.origin(), Options::default())
            .await
            .unwrap();
        let r = conn
            .request(&Request::get("/close/data.txt"), 1024)
            .await
            .unwrap();
        assert_eq!((r.head.status, &r.body[..]), (200, &b"closing\n"[..]));
        assert!(r.head.has_token("connection", "close"), "{:?}", r.head);
        assert!(!conn.is_reusable());
        assert_eq!(conn.check_idle(), Idle::NotIdle);
        let e = conn
            .request(&Request::get("/small.txt"), 1024)
            .await
            .unwrap_err();
        assert!(e.is_unusable(), "{e}");

        // The client's side: Connection: close on a keep-alive location.
        let mut conn = Connection::connect(&nginx.origin(), Options::default())
            .await
            .unwrap();
        let r = conn
            .request(&Request::get("/small.txt"), 1024)
            .await
            .unwrap();
        assert!(conn.is_reusable());
        assert!(!r.head.has_token("connection", "close"));
        let r = conn
            .request(&Request::get("/small.txt").close(), 1024)
            .await
            .unwrap();
        assert_eq!(&r.body[..], b"small\n");
        assert!(r.head.has_token("connection", "close"), "{:?}", r.head);
        assert!(!conn.is_reusable());
        assert!(conn
            .request(&Request::get("/small.txt"), 1024)
            .await
            .unwrap_err()
            .is_unusable());
    });
}

#[test]
fn check_idle_sees_nginx_close_an_idle_connection_after_its_keepalive_timeout() {
    let nginx = Nginx::start();
    runtime().block_on(async {
        let mut conn = Connection::connect(&nginx.origin(), Options::default())
            .await
            .unwrap();
        let r = conn
            .request(&Request::get("/short/data.txt"), 1024)
            .await
            .unwrap();
        assert_eq!((r.head.status, &r.body[..]), (200, &b"short\n"[..]));
        // Nothing in the answer says it will close: reusable for now.
        assert!(conn.is_reusable());
        assert_eq!(conn.check_idle(), Idle::Ready);
        tally::sleep(Duration::from_millis(300)).await;
        assert_eq!(conn.check_idle(), Idle::Ready, "closed before 1 s");
        // Past the 1 s keepalive_timeout nginx has closed it.
        tally::sleep(Duration::from_millis(1_200)).await;
        assert_eq!(conn.check_idle(), Idle::ClosedByServer);
        assert!(!conn.is_reusable());
        let e = conn
            .request(&Request::get("/short/data.txt"), 1024)
            .await
            .unwrap_err();
        assert!(e.is_unusable(), "{e}");

        // A fresh connection works, and the 5 s timeout elsewhere keeps it.
        let mut conn = Connection::connect(&nginx.origin(), Options::default())
            .await
            .unwrap();
        conn.request(&Request::get("/small.txt"), 1024)
            .await
            .unwrap();
        tally::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(conn.check_idle(), Idle::Ready);
        let r = conn
            .request(&Request::get("/small.txt"), 1024)
            .await
            .unwrap();
        assert_eq!(connection_of(&r.head).1, 2);
    });
}
