//! `heq-run --role server|client` as two processes over loopback, and the failure paths: the
//! outputs equal `--mode plain` byte for byte, every report row's measured traffic equals the
//! prediction; pinning, plan mismatch (exit 3), weights in the client plan, a port in use, a
//! stalled or garbage-sending peer, eight concurrent clients; and fault injection on the
//! party drivers (the channel cut after every message count).
#![cfg(feature = "cli")]
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::every_op_runnable;
use heq_runtime::ot::IdealOt;
use heq_runtime::party::{Prepared, ServerLayers, run_client, run_server};
use heq_runtime::plan::{Op, Plan, Requant, Rounding, write_plan};
use heq_runtime::reference::testutil::PlanBuilder;
use heq_runtime::transport::memory::{PipeEnd, pipe};
use heq_runtime::transport::net::{Fingerprint, connect};
use heq_runtime::transport::quic::frame_channel;
use heq_runtime::transport::{Counters, Exchange, TransportError};
use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::io::AsyncWriteExt;

/// A fresh directory with `server.plan`, `client.plan` (no weights) and `x.npy` (`n` samples).
fn setup(name: &str, n: usize) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("heq-run-net-{}-{k}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let plan = every_op_runnable();
    write_plan(&plan, &dir.join("server.plan")).unwrap();
    write_plan(&plan.to_client(), &dir.join("client.plan")).unwrap();
    write_input(&dir.join("x.npy"), &plan, n, 0);
    dir
}

/// `n` samples of varied values (offset by `seed`) in the plan's input shape, with a batch
/// dimension.
fn write_input(path: &Path, plan: &Plan, n: usize, seed: usize) {
    let mut shape = vec![n];
    shape.extend(&plan.public.input.shape);
    let len: usize = shape.iter().product();
    let data: Vec<f32> = (0..len)
        .map(|i| ((i * 7 + seed * 3) % 23) as f32 * 0.37 - 4.0)
        .collect();
    ndarray_npy::write_npy(path, &ArrayD::from_shape_vec(shape, data).unwrap()).unwrap();
}

fn heq_run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heq-run"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A server process: its address and fingerprint from the first stderr line; the rest of
/// stderr collected by a thread.
struct Server {
    child: Child,
    addr: String,
    fingerprint: String,
    log: Option<JoinHandle<String>>,
}

impl Server {
    fn start(dir: &Path, plan: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_heq-run"))
            .current_dir(dir)
            .args([
                "--plan",
                plan,
                "--role",
                "server",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .args(if extra.contains(&"--timeout") {
                &[][..]
            } else {
                &["--timeout", "30"][..]
            })
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // The server prepares its layers, then listens.
        let mut before = Vec::new();
        let rest = loop {
            let line = lines.next().unwrap().unwrap();
            if let Some(rest) = line.strip_prefix("heq-run server: listening on ") {
                break rest.to_string();
            }
            assert!(
                line.starts_with("heq-run server: prepar"),
                "unexpected line {line:?} before listening"
            );
            before.push(line);
        };
        let (addr, fingerprint) = rest
            .split_once(", certificate fingerprint sha256:")
            .unwrap();
        let (addr, fingerprint) = (addr.to_string(), fingerprint.to_string());
        let log = std::thread::spawn(move || {
            before
                .into_iter()
                .chain(lines.map_while(Result::ok))
                .collect::<Vec<_>>()
                .join("\n")
        });
        Server {
            child,
            addr,
            fingerprint,
            log: Some(log),
        }
    }

    /// Waits (at most a minute) for the exit; returns the exit code and the rest of stderr.
    fn wait(mut self) -> (Option<i32>, String) {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log.take().unwrap().join().unwrap();
                return (status.code(), log);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server did not exit");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client arguments against `server`, pinned unless `pin` is `None`.
fn client_args<'a>(server: &'a Server, pin: Option<&'a str>, plan: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "--plan",
        plan,
        "--role",
        "client",
        "--connect",
        &server.addr,
        "--input",
        "x.npy",
        "--output",
        "y.npy",
        "--raw",
        "--timeout",
        "30",
        "--report",
        "client.json",
    ];
    if let Some(pin) = pin {
        args.extend(["--server-fingerprint", pin]);
    }
    args
}

/// Runs `--mode plain` on `x.npy` into `plain.npy` and returns its bytes.
fn plain(dir: &Path, input: &str) -> Vec<u8> {
    let out = heq_run(
        dir,
        &[
            "--plan",
            "server.plan",
            "--mode",
            "plain",
            "--input",
            input,
            "--output",
            "plain.npy",
            "--raw",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::read(dir.join("plain.npy")).unwrap()
}

/// Every row of a JSON report: measured == predicted; returns the report.
fn check_report(path: &Path, role: &str, samples: u64) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(report["schema"], "heq-run-report/1");
    assert_eq!(report["role"], role);
    assert_eq!(report["samples"], samples);
    assert_eq!(report["matches_prediction"], true);
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), every_op_runnable().public.layers.len() + 2);
    for row in layers.iter().chain([&report["total"]]) {
        assert_eq!(row["measured"], row["predicted"], "{row}");
    }
    assert!(report["total"]["measured"]["bytes_up"].as_u64().unwrap() > 0);
    assert!(report["peak_rss_bytes"].as_u64().unwrap() > 0);
    // The OT extension's bytes counted on the connection equal the cost model's.
    let ot = &report["ot_extension"];
    assert_eq!(ot["source"], "measured");
    assert_eq!(ot["bytes_up"], ot["predicted_bytes_up"], "{ot}");
    assert_eq!(ot["bytes_down"], ot["predicted_bytes_down"], "{ot}");
    // The QUIC datagrams carry at least the frames.
    let quic_up = report["transport"]["quic_bytes_up"].as_u64().unwrap();
    assert!(quic_up > report["total"]["measured"]["bytes_up"].as_u64().unwrap());
    report
}

#[test]
fn two_processes_equal_plain_and_the_prediction() {
    let dir = setup("pair", 2);
    let server = Server::start(
        &dir,
        "server.plan",
        &["--sessions", "1", "--report", "server.json"],
    );
    // A wrong pin first: refused before any session starts.
    let wrong = "00".repeat(32);
    let out = heq_run(&dir, &client_args(&server, Some(&wrong), "client.plan"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "server certificate fingerprint sha256:{} does not match the pinned sha256:{wrong}",
            server.fingerprint
        )),
        "{err}"
    );
    assert!(!dir.join("y.npy").exists());
    let pin = server.fingerprint.clone();
    let out = heq_run(&dir, &client_args(&server, Some(&pin), "client.plan"));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        !err.contains("NOT authenticated") && !err.contains("warning"),
        "{err}"
    );
    assert!(err.contains("reveal") && err.contains("total"), "{err}");
    // No progress bar when stderr is not a terminal.
    assert!(!err.contains(" rounds, "), "{err}");
    let (code, log) = server.wait();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("session 1 with 127.0.0.1:"), "{log}");
    assert_eq!(
        std::fs::read(dir.join("y.npy")).unwrap(),
        plain(&dir, "x.npy")
    );
    let client = check_report(&dir.join("client.json"), "client", 2);
    let server = check_report(&dir.join("server.json"), "server", 2);
    // Same rows and numbers in both views.
    let rows = |r: &serde_json::Value| {
        r["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row["name"].clone(),
                    row["layer"].clone(),
                    row["measured"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&client), rows(&server));
    assert_eq!(client["plan_hash"], server["plan_hash"]);
    assert_eq!(
        client["transport"]["frame_header_bytes_up"],
        server["transport"]["frame_header_bytes_up"]
    );
}

#[test]
fn unpinned_client_warns_and_allow_weights_runs_a_server_plan() {
    let dir = setup("unpinned", 1);
    let server = Server::start(&dir, "server.plan", &["--sessions", "1"]);
    // The client refuses a plan with weights ...
    let out = heq_run(&dir, &client_args(&server, None, "server.plan"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("this plan carries the server's weights, which the client must not hold"),
        "{}",
        stderr(&out)
    );
    // ... unless told.
    let mut args = client_args(&server, None, "server.plan");
    args.push("--allow-weights");
    let out = heq_run(&dir, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "WARNING: the server is NOT authenticated (no --server-fingerprint); it presented the certificate sha256:{}",
            server.fingerprint
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.wait().0, Some(0));
    assert_eq!(
        std::fs::read(dir.join("y.npy")).unwrap(),
        plain(&dir, "x.npy")
    );
}

#[test]
fn plan_mismatch_exits_3_on_both_sides() {
    let dir = setup("mismatch", 1);
    let mut other = every_op_runnable().to_client();
    other.public.protocol.stat_bits += 1;
    write_plan(&other, &dir.join("other.plan")).unwrap();
    let server = Server::start(&dir, "server.plan", &["--sessions", "1"]);
    let out = heq_run(
        &dir,
        &client_args(&server, Some(&server.fingerprint.clone()), "other.plan"),
    );
    let (server_hash, client_hash) = (
        heq_runtime::party::net::hex(&every_op_runnable().public.hash()),
        heq_runtime::party::net::hex(&other.public.hash()),
    );
    let message = format!("plan mismatch: server plan {server_hash}, client plan {client_hash}");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains(&message), "{}", stderr(&out));
    let (code, log) = server.wait();
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains(&message), "{log}");
    assert!(!dir.join("y.npy").exists());
}

#[test]
fn server_refuses_a_client_plan_and_a_port_in_use() {
    let dir = setup("server-errors", 1);
    let out = heq_run(
        &dir,
        &[
            "--plan",
            "client.plan",
            "--role",
            "server",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("client.plan: this plan has no weights"),
        "{}",
        stderr(&out)
    );
    let server = Server::start(&dir, "server.plan", &[]);
    let out = heq_run(
        &dir,
        &[
            "--plan",
            "server.plan",
            "--role",
            "server",
            "--listen",
            &server.addr,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "cannot listen on {}: Address already in use",
            server.addr
        )),
        "{}",
        stderr(&out)
    );
    // Missing input, wrong shape: clear errors before connecting.
    let mut args = client_args(&server, None, "client.plan");
    args[7] = "missing.npy";
    let out = heq_run(&dir, &args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("reading the input"),
        "{}",
        stderr(&out)
    );
    ndarray_npy::write_npy(dir.join("bad.npy"), &ArrayD::<f32>::zeros(vec![3, 3])).unwrap();
    args[7] = "bad.npy";
    let out = heq_run(&dir, &args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is neither the plan's input shape"),
        "{}",
        stderr(&out)
    );
    // Usage: a role without its address.
    let out = heq_run(&dir, &["--plan", "server.plan", "--role", "server"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn eight_concurrent_clients_are_bit_exact() {
    let dir = setup("eight", 1);
    let plan = every_op_runnable();
    let server = Server::start(
        &dir,
        "server.plan",
        &["--sessions", "8", "--max-sessions", "4"],
    );
    let clients: Vec<(PathBuf, Child)> = (0..8)
        .map(|i| {
            let sub = dir.join(format!("c{i}"));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::copy(dir.join("server.plan"), sub.join("server.plan")).unwrap();
            std::fs::copy(dir.join("client.plan"), sub.join("client.plan")).unwrap();
            write_input(&sub.join("x.npy"), &plan, 1, i + 1);
            let child = Command::new(env!("CARGO_BIN_EXE_heq-run"))
                .current_dir(&sub)
                .args(client_args(
                    &server,
                    Some(&server.fingerprint),
                    "client.plan",
                ))
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (sub, child)
        })
        .collect();
    let mut outputs = Vec::new();
    for (sub, child) in clients {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let y = std::fs::read(sub.join("y.npy")).unwrap();
        assert_eq!(y, plain(&sub, "x.npy"));
        outputs.push(y);
    }
    // Different inputs, different outputs: the sessions did not mix.
    outputs.sort();
    outputs.dedup();
    assert!(outputs.len() > 1);
    let (code, log) = server.wait();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(log.matches(" done (1 sample(s))").count(), 8, "{log}");
    // The default budget holds the small plan's kernels: prepared once for all sessions.
    assert!(
        log.contains("prepared the kernels of 3 of 3 linear layers"),
        "{log}"
    );
}

/// A server whose kernels are built during every inference (`--kernel-memory 0`) serves two
/// sessions one after the other, each bit-exact.
#[test]
fn a_server_without_prepared_kernels_serves_two_sessions() {
    let dir = setup("nokernels", 1);
    let server = Server::start(
        &dir,
        "server.plan",
        &["--sessions", "2", "--kernel-memory", "0"],
    );
    for _ in 0..2 {
        let out = heq_run(
            &dir,
            &client_args(&server, Some(&server.fingerprint), "client.plan"),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            std::fs::read(dir.join("y.npy")).unwrap(),
            plain(&dir, "x.npy")
        );
    }
    let (code, log) = server.wait();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(log.matches(" done (1 sample(s))").count(), 2, "{log}");
    assert!(
        log.contains("preparing the linear layers, kernels up to 0 MiB"),
        "{log}"
    );
    assert!(
        log.contains("prepared the kernels of 0 of 3 linear layers (0.0 of "),
        "{log}"
    );
}

/// A client in this process that connects (pinned) to `server` and then misbehaves with `act`
/// on the frame stream, keeping the connection until the server closes it (at most 20 s).
fn misbehave(
    server: &Server,
    act: impl AsyncFnOnce(&mut heq_runtime::transport::quic::QuicStream),
) {
    let addr: SocketAddr = server.addr.parse().unwrap();
    let pin: Fingerprint = server.fingerprint.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut peer, _) = connect(addr, Some(pin)).await.unwrap();
        let mut stream = frame_channel(&mut peer.conn).await.unwrap().into_inner();
        act(&mut stream).await;
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = [0u8; 1024];
            use tokio::io::AsyncReadExt;
            while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
        .await;
    });
}

/// A one-session server and a misbehaving client; returns the server's exit code and log.
fn misbehaving_client(
    extra: &[&str],
    act: impl AsyncFnOnce(&mut heq_runtime::transport::quic::QuicStream),
) -> (Option<i32>, String) {
    let dir = setup("misbehaving", 1);
    let mut args = vec!["--sessions", "1"];
    args.extend(extra);
    let server = Server::start(&dir, "server.plan", &args);
    misbehave(&server, act);
    server.wait()
}

/// A garbage-sending client and a client with another plan fail their sessions; the server
/// keeps serving and the next client gets its output; the server exits 3 (a mismatch).
#[test]
fn failing_sessions_do_not_stop_the_server() {
    let dir = setup("keeps-serving", 1);
    let mut other = every_op_runnable().to_client();
    other.public.protocol.stat_bits += 1;
    write_plan(&other, &dir.join("other.plan")).unwrap();
    let server = Server::start(
        &dir,
        "server.plan",
        &["--sessions", "3", "--max-sessions", "2"],
    );
    misbehave(&server, async |s| {
        s.write_all(&[9, 9, 9, 9, 9]).await.unwrap();
        s.flush().await.unwrap();
    });
    let pin = server.fingerprint.clone();
    let out = heq_run(&dir, &client_args(&server, Some(&pin), "other.plan"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = heq_run(&dir, &client_args(&server, Some(&pin), "client.plan"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(dir.join("y.npy")).unwrap(),
        plain(&dir, "x.npy")
    );
    let (code, log) = server.wait();
    assert_eq!(code, Some(3), "{log}");
    assert!(
        log.contains("session 1 failed: frame of 151587081 bytes exceeds the limit"),
        "{log}"
    );
    assert!(log.contains("session 2 failed: plan mismatch"), "{log}");
    assert!(log.contains("session 3 with 127.0.0.1:"), "{log}");
    assert!(log.ends_with("heq-run: 2 of 3 sessions failed"), "{log}");
}

#[test]
fn a_stalled_client_times_out() {
    let (code, log) = misbehaving_client(&["--timeout", "1"], async |_| {});
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("session 1 failed: no message from the peer for 1 s while waiting for it"),
        "{log}"
    );
}

/// A plan whose only layer is a requantizing rescale of a large input: its one batch of random
/// OTs keeps both parties computing for a long time between two messages.
fn one_large_ot_batch() -> Plan {
    let shape = [4, 128, 128];
    let mut b = PlanBuilder::new(&shape, (-(1 << 12), 1 << 12));
    let rescale = Op::Rescale(Requant {
        multipliers: vec![3],
        shift: 12,
        clamp: (-128, 127),
        rounding: Rounding::HalfEven,
    });
    let y = b.layer(rescale, &[b.input()], &shape, (-128, 127));
    b.build(y).unwrap()
}

/// `--timeout` bounds waiting for the peer, not a party's own computation: a batch of random
/// OTs that takes several times the timeout completes, bit-exact.
#[test]
fn a_batch_of_random_ots_longer_than_the_timeout_is_not_a_stalled_peer() {
    let dir = setup("long-batch", 1);
    let plan = one_large_ot_batch();
    write_plan(&plan, &dir.join("server.plan")).unwrap();
    write_plan(&plan.to_client(), &dir.join("client.plan")).unwrap();
    write_input(&dir.join("x.npy"), &plan, 1, 0);
    let timeout = "0.15";
    let server = Server::start(
        &dir,
        "server.plan",
        &["--sessions", "1", "--timeout", timeout],
    );
    let mut args = client_args(&server, Some(&server.fingerprint), "client.plan");
    let at = args.iter().position(|a| *a == "--timeout").unwrap();
    args[at + 1] = timeout;
    let out = heq_run(&dir, &args);
    let (code, log) = server.wait();
    assert!(out.status.success(), "{}\nserver: {log}", stderr(&out));
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        std::fs::read(dir.join("y.npy")).unwrap(),
        plain(&dir, "x.npy")
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("client.json")).unwrap()).unwrap();
    let rescale = &report["layers"][1];
    assert_eq!(rescale["name"], "rescale");
    let ms = rescale["wall_ms"].as_f64().unwrap();
    assert!(
        ms > 3.0 * 150.0,
        "the layer and its OT batch took {ms} ms: not long enough to test the timeout"
    );
    assert_eq!(rescale["measured"], rescale["predicted"]);
}

#[test]
fn garbage_and_oversized_frames_fail_the_session() {
    let (code, log) = misbehaving_client(&[], async |s| {
        s.write_all(&[3, 0, 0, 0, 1, 2, 3]).await.unwrap();
        s.flush().await.unwrap();
    });
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("session 1 failed: malformed handshake from the peer (3 bytes)"),
        "{log}"
    );
    let (code, log) = misbehaving_client(&[], async |s| {
        s.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        s.flush().await.unwrap();
    });
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(
            "session 1 failed: frame of 4294967295 bytes exceeds the limit of 67108864 bytes"
        ),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_client_that_cannot_connect_fails_within_its_timeout() {
    let dir = setup("no-server", 1);
    // A bound UDP port nobody answers on.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let start = std::time::Instant::now();
    let out = heq_run(
        &dir,
        &[
            "--plan",
            "client.plan",
            "--role",
            "client",
            "--connect",
            &addr,
            "--input",
            "x.npy",
            "--output",
            "y.npy",
            "--timeout",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(
        stderr(&out).contains(&format!(
            "connecting to {addr}: no message from the peer for 1 s while waiting for it"
        )),
        "{}",
        stderr(&out)
    );
}

/// An [`Exchange`] that fails and drops its channel at message `cut` (counting from 0).
struct CutAfter {
    inner: Option<PipeEnd>,
    left: usize,
    counters: Counters,
}

impl Exchange for CutAfter {
    fn exchange(&mut self, out: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        if self.left == 0 {
            self.inner = None;
        }
        self.left = self.left.saturating_sub(1);
        let inner = self.inner.as_mut().ok_or(TransportError::Closed)?;
        let got = inner.exchange(out)?;
        self.counters = inner.counters();
        Ok(got)
    }

    fn counters(&self) -> Counters {
        self.counters
    }
}

/// Cuts the channel of one party after every possible number of messages: both parties fail
/// with an error (no hang, no panic); with the channel intact both succeed.
#[test]
fn cutting_the_channel_after_any_message_fails_both_parties() {
    let plan = every_op_runnable();
    let prepared = Prepared::new(&plan.public).unwrap();
    let weights = plan.weights.as_ref().unwrap();
    let layers = ServerLayers::new(&plan.public, &prepared, weights, usize::MAX).unwrap();
    let messages = prepared.cost.channel().rounds as usize;
    let input: Vec<i64> = (0..32).map(|i| (i * 5 % 17) - 8).collect();
    for cut_server in [false, true] {
        for k in 0..=messages {
            let (mut so, mut co) = IdealOt::pair(k as u64);
            let (se, ce) = pipe();
            let cut = |end| CutAfter {
                inner: Some(end),
                left: k,
                counters: Counters::default(),
            };
            let never = usize::MAX;
            let (mut se, mut ce) = if cut_server {
                (
                    cut(se),
                    CutAfter {
                        left: never,
                        ..cut(ce)
                    },
                )
            } else {
                (
                    CutAfter {
                        left: never,
                        ..cut(se)
                    },
                    cut(ce),
                )
            };
            let (server, client) = std::thread::scope(|scope| {
                let (plan, prepared, layers) = (&plan, &prepared, &layers);
                let server = scope.spawn(move || {
                    let mut rng = ChaCha20Rng::seed_from_u64(1);
                    let r = run_server(&plan.public, layers, prepared, &mut se, &mut so, &mut rng);
                    drop(se);
                    r
                });
                let mut rng = ChaCha20Rng::seed_from_u64(2);
                let client = run_client(&plan.public, &input, prepared, &mut ce, &mut co, &mut rng);
                drop(ce);
                (server.join().expect("no panic"), client)
            });
            if k == messages {
                assert!(
                    server.is_ok() && client.is_ok(),
                    "cut at {k}: {server:?} {client:?}"
                );
            } else {
                assert!(server.is_err(), "cut at {k} (server cut: {cut_server})");
                assert!(client.is_err(), "cut at {k} (server cut: {cut_server})");
            }
        }
    }
}

#[test]
fn a_server_certificate_from_pem_files_is_presented_and_pinned() {
    let dir = setup("pem", 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["server.example".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let server = Server::start(
        &dir,
        "server.plan",
        &["--sessions", "1", "--cert", "cert.pem", "--key", "key.pem"],
    );
    assert_eq!(server.fingerprint, Fingerprint::of(cert.der()).to_string());
    let pin = server.fingerprint.clone();
    let out = heq_run(&dir, &client_args(&server, Some(&pin), "client.plan"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.wait().0, Some(0));
    assert_eq!(
        std::fs::read(dir.join("y.npy")).unwrap(),
        plain(&dir, "x.npy")
    );
}
