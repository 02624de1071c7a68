//! Test harness: a real tansu broker per test, topic helpers, a daemon process, output readers.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The tansu binary: `$TANSU_BIN`, else installed by `scripts/kafka-local.sh path`.
fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return p.into();
    }
    let out = Command::new("bash")
        .arg(Path::new(ROOT).join("scripts/kafka-local.sh"))
        .arg("path")
        .output()
        .expect("run scripts/kafka-local.sh path");
    assert!(
        out.status.success(),
        "cannot install tansu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// How to start a tansu process.
struct TansuArgs<'a> {
    /// `host:port` it listens on.
    listen: &'a str,
    /// `host:port` it tells clients to connect to (a TLS proxy's, when one fronts it).
    advertised: &'a str,
    /// S3 storage on this server, else memory storage.
    s3: Option<&'a S3Server>,
    /// Refuse clients that have not authenticated (SASL).
    authentication: bool,
}

/// A tansu process as `a` says.
fn spawn_tansu(a: &TansuArgs<'_>) -> Child {
    let listen = format!("tcp://{}", a.listen);
    let advertised = format!("tcp://{}", a.advertised);
    let mut cmd = Command::new(tansu_bin());
    cmd.args([
        "broker",
        "--listener-url",
        &listen,
        "--advertised-listener-url",
        &advertised,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if a.authentication {
        cmd.arg("--authentication");
    }
    match a.s3 {
        None => cmd.args(["--storage-engine", "memory://tansu/"]),
        Some(s3) => cmd
            .args(["--storage-engine", "s3://tansu/"])
            .env("AWS_ENDPOINT", &s3.url)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1"),
    };
    let child = cmd.spawn().expect("start tansu");
    wait_listening(a.listen, "tansu");
    child
}

fn wait_listening(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TLS-terminating proxy (Debian's `stunnel4`) in front of a broker, with a certificate for
/// 127.0.0.1 signed by a CA made for the test (`openssl`); killed on drop.
pub struct TlsProxy {
    child: Child,
    /// The CA certificate (PEM) clients must trust.
    pub ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsProxy {
    fn start(accept: &str, connect: &str) -> TlsProxy {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl (Debian package `openssl`)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=streamscore test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(d.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ]);
        let conf = d.join("stunnel.conf");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\n[kafka]\naccept = {accept}\nconnect = {connect}\ncert = {}\nkey = {}\n",
                d.join("server.pem").display(),
                d.join("server.key").display()
            ),
        )
        .unwrap();
        let child = Command::new("stunnel4")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel4 (Debian package `stunnel4`; .ci/run installs it)");
        wait_listening(accept, "stunnel4");
        TlsProxy {
            child,
            ca: d.join("ca.pem"),
            _dir: dir,
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local S3 server (`moto_server`, from `pip install "moto[server]"`) with a `tansu`
/// bucket, killed on drop.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install \"moto[server]\"; .ci/run installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        // Create the bucket (moto does not check signatures).
        loop {
            let created = std::process::Command::new("curl")
                .args(["-sf", "-X", "PUT", &format!("{url}/tansu")])
                .status()
                .is_ok_and(|s| s.success());
            if created {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on {url}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        S3Server { child, url }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill SIG PID`.
fn send_signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tansu broker on a free loopback port, killed (and waited for) on drop.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`: where clients connect (the TLS proxy's port when there is one).
    pub addr: String,
    /// The TLS proxy in front of the broker, if any.
    pub tls: Option<TlsProxy>,
}

impl Broker {
    pub fn start() -> Broker {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = spawn_tansu(&TansuArgs {
            listen: &addr,
            advertised: &addr,
            s3: None,
            authentication: false,
        });
        Broker {
            child,
            addr,
            tls: None,
        }
    }

    /// A broker reached over TLS only: tansu (which answers plaintext even on a `tls://`
    /// listener) behind a [`TlsProxy`], advertising the proxy's port. With `authentication`,
    /// tansu refuses clients that have not logged in with SASL.
    pub fn start_tls(authentication: bool) -> Broker {
        let inner = format!("127.0.0.1:{}", free_port());
        let addr = format!("127.0.0.1:{}", free_port());
        let tls = TlsProxy::start(&addr, &inner);
        let child = spawn_tansu(&TansuArgs {
            listen: &inner,
            advertised: &addr,
            s3: None,
            authentication,
        });
        Broker {
            child,
            addr,
            tls: Some(tls),
        }
    }

    /// Client settings for this broker: its address, and TLS trusting its CA when proxied.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.addr);
        if let Some(tls) = &self.tls {
            c.set("security.protocol", "SSL")
                .set("ssl.ca.location", tls.ca.display().to_string());
        }
        c
    }

    /// A broker whose records survive `kill -9`: tansu's S3 storage on `s3`, a local S3
    /// server ([`S3Server`]).
    pub fn start_durable(s3: &S3Server) -> Broker {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = spawn_tansu(&Self::durable(&addr, s3));
        Broker {
            child,
            addr,
            tls: None,
        }
    }

    fn durable<'a>(addr: &'a str, s3: &'a S3Server) -> TansuArgs<'a> {
        TansuArgs {
            listen: addr,
            advertised: addr,
            s3: Some(s3),
            authentication: false,
        }
    }

    /// Kills the broker with SIGKILL and starts it again on the same address and storage.
    pub fn kill_and_restart(&mut self, s3: &S3Server) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_tansu(&Self::durable(&self.addr, s3));
    }

    /// Sends `sig` (e.g. `-STOP`, `-CONT`) to the broker process.
    pub fn signal(&self, sig: &str) {
        send_signal(self.child.id(), sig);
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let r = admin
            .create_topics(&[t], &AdminOptions::new())
            .await
            .unwrap();
        r[0].as_ref()
            .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
    }

    pub fn producer(&self) -> FutureProducer {
        self.client()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .unwrap()
    }

    /// Produces `(key, value)` records, waiting for every delivery.
    pub async fn produce(&self, topic: &str, records: &[(String, Vec<u8>)]) {
        let p = self.producer();
        for chunk in records.chunks(2000) {
            let sends = chunk.iter().map(|(k, v)| {
                let p = p.clone();
                async move {
                    p.send(
                        FutureRecord::to(topic).key(k).payload(v),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .expect("test produce");
                }
            });
            futures::future::join_all(sends).await;
        }
    }

    /// Reads every record of `topic` from the beginning (no consumer group), stopping once
    /// `expect` records arrived and nothing more came for `settle`, or at `timeout`. (tansu's
    /// high watermarks are approximate, so "everything" means "until the topic goes quiet":
    /// with duplicates, `expect` alone can be reached before every partition is read.)
    pub fn read_all(
        &self,
        topic: &str,
        partitions: i32,
        expect: usize,
        settle: Duration,
        timeout: Duration,
    ) -> Vec<Record> {
        let c: BaseConsumer = self
            .client()
            .set("group.id", "streamscore-test-reader")
            .set("enable.auto.commit", "false")
            // As the daemon: librdkafka's 1 s pause of a partition whose queue is full held
            // reads of large topics near 165,000 records/s.
            .set(
                "fetch.queue.backoff.ms",
                streamscore::stream::kafka::DEFAULT_FETCH_QUEUE_BACKOFF_MS,
            )
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let start = Instant::now();
        let mut last = Instant::now();
        loop {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    out.push(Record::from(&m));
                    last = Instant::now();
                }
                Some(Err(e)) => eprintln!("reader: {e}"),
                None => {}
            }
            if out.len() >= expect && last.elapsed() >= settle {
                break;
            }
            if start.elapsed() > timeout {
                break;
            }
        }
        out
    }
}

impl Broker {
    /// CPU seconds the broker process has used so far (for the bench).
    #[allow(dead_code)]
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(self.child.id())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A record read back, owned.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub timestamp_ms: Option<i64>,
}

impl Record {
    fn from(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_owned(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
            timestamp_ms: m.timestamp().to_millis(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).expect("output is JSON")
    }

    /// `(source partition, source offset)` from the headers.
    pub fn source(&self) -> (i32, i64) {
        (
            self.headers["streamscore.source.partition"]
                .parse()
                .unwrap(),
            self.headers["streamscore.source.offset"].parse().unwrap(),
        )
    }
}

/// A running `streamscore run` process; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

pub struct DaemonArgs<'a> {
    pub brokers: &'a str,
    pub input: &'a str,
    pub output: &'a str,
    pub name: &'a str,
    pub group: &'a str,
    pub workers: usize,
    pub log_dir: &'a Path,
    /// More `streamscore run` flags (e.g. `--delivery exactly-once`).
    pub extra: &'a [&'a str],
}

impl Daemon {
    pub fn start(a: &DaemonArgs<'_>) -> Daemon {
        Self::start_with(Path::new(env!("CARGO_BIN_EXE_streamscore")), a)
    }

    /// [`Daemon::start`] with another `streamscore` binary (e.g. an older build, to compare).
    pub fn start_with(bin: &Path, a: &DaemonArgs<'_>) -> Daemon {
        let log = a.log_dir.join(format!("{}-{}.log", a.name, next_id()));
        let f = std::fs::File::create(&log).unwrap();
        // `STREAMSCORE_TEST_KAFKA_DEBUG=cgrp` (librdkafka's `debug` contexts) puts the
        // clients' own debug lines in each daemon's log, to diagnose a stall.
        let kafka_debug = std::env::var("STREAMSCORE_TEST_KAFKA_DEBUG").ok();
        let log_filter = if kafka_debug.is_some() {
            "info,librdkafka=debug,rdkafka=debug"
        } else {
            "info,librdkafka=warn,rdkafka=warn"
        };
        let child = Command::new(bin)
            .args([
                "run",
                "--brokers",
                a.brokers,
                "--input-topic",
                a.input,
                "--output-topic",
                a.output,
            ])
            .args([
                "--name",
                a.name,
                "--group",
                a.group,
                "--workers",
                &a.workers.to_string(),
            ])
            .args([
                "--kafka",
                "session.timeout.ms=6000",
                "--kafka",
                "heartbeat.interval.ms=500",
                // librdkafka retries an unanswered JoinGroup after this + 3 s: a stuck join
                // costs a test 33 s, not 63 (the daemon's default is 60 s).
                "--kafka",
                "max.poll.interval.ms=30000",
            ])
            .args(a.extra)
            .args(
                kafka_debug
                    .iter()
                    .flat_map(|d| ["--kafka".to_string(), format!("debug={d}")]),
            )
            .args(["--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(a.log_dir.join(format!("state-{}", a.name)))
            .arg("--socket")
            .arg(a.log_dir.join(format!("{}.sock", a.name)))
            .env("RUST_LOG", log_filter)
            .env_remove("STREAMSCORE_MODEL")
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("start streamscore run");
        Daemon { child, log }
    }

    pub fn signal(&self, sig: &str) {
        send_signal(self.child.id(), sig);
    }

    /// Waits for the process to exit; returns its exit code (None when killed by a signal).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                start.elapsed() < timeout,
                "streamscore did not exit within {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sum of every sample of counter `name` on the daemon's `/metrics` (0 before its
    /// HTTP listener is up). Cheap enough to poll: the bench waits on it instead of reading
    /// the output topic while the daemon runs.
    #[allow(dead_code)]
    pub fn metric_sum(&self, name: &str) -> f64 {
        use std::io::{Read, Write};
        let Some(addr) = http_address(&self.log_text()) else {
            return 0.0;
        };
        let Ok(mut conn) = std::net::TcpStream::connect(&addr) else {
            return 0.0;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        if conn.write_all(request.as_bytes()).is_err() || conn.read_to_string(&mut text).is_err() {
            return 0.0;
        }
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// CPU seconds (user + system) the process has used so far (for the bench).
    #[allow(dead_code)]
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(self.child.id())
    }

    /// Peak resident memory (VmHWM) so far, in MB (for the bench).
    #[allow(dead_code)]
    pub fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

/// CPU seconds (user + system) used by process `pid` (`/proc/PID/stat`, 100 ticks a second).
#[allow(dead_code)]
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `STREAMSCORE_TEST_KEEP_LOGS=<dir>` keeps every daemon's log, passing tests' too.
        if let Some(dir) = std::env::var_os("STREAMSCORE_TEST_KEEP_LOGS") {
            if let Some(name) = self.log.file_name() {
                let name = name.to_string_lossy();
                let kept = Path::new(&dir).join(format!("{}-{name}", std::process::id()));
                let _ = std::fs::copy(&self.log, kept);
            }
        }
    }
}

/// Tweets with ids as keys: varied texts from the repository's samples.
pub fn tweets(n: usize) -> Vec<(String, Vec<u8>)> {
    let samples: Vec<String> =
        std::fs::read_to_string(Path::new(ROOT).join("samples/tweets.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
    (0..n)
        .map(|i| {
            let id = format!("t{i}");
            let text = format!("{} #{}", samples[i % samples.len()], i % 97);
            (
                id.clone(),
                serde_json::json!({"id": id, "text": text})
                    .to_string()
                    .into_bytes(),
            )
        })
        .collect()
}

/// Waits until `cond` holds, polling; after `timeout` panics with what `context` says (e.g.
/// the daemon's log).
pub fn wait_until(timeout: Duration, context: impl Fn() -> String, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out; context:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every `partitions assigned` line of a daemon's log: the worker's label and the time, in ms
/// since the epoch, in log order.
pub fn assignments(log: &str) -> Vec<(String, i64)> {
    log.lines()
        .filter(|l| l.contains("partitions assigned"))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let at = chrono::DateTime::parse_from_rfc3339(words.next()?).ok()?;
            let worker = words.find_map(|w| w.strip_prefix("worker="))?;
            Some((worker.to_string(), at.timestamp_millis()))
        })
        .collect()
}

/// A two-thread runtime for the async helpers of sync tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The `host:port` a daemon's log says its HTTP API listens on, once it says so.
pub fn http_address(log: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.split("HTTP API listening address=").nth(1))
        .map(|a| {
            a.trim()
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .to_owned()
        })
}
