//! Load on one shared service, through its socket (raw protocol, no
//! Python, so that the service is what is measured): 64 clients logging
//! at once, a thousand runs open at once, ten thousand connections opened
//! and closed. Every row arrives, and file descriptors and memory return
//! to their baseline. Figures (peak RSS, service CPU) are printed for
//! docs/reliability.md. Each service is started with this process as its
//! `--pid`, so whatever happens it ends with the test binary.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::raw::*;
use prost::Message;
use testkit::process::{LIMIT, memory_kib, within};
use wandb_proto::frame::encode_frame;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::server_request::ServerRequestType;

/// CPU seconds a process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// An offline run's `inform_init` without the system monitor.
fn quiet_init(id: &str, dir: &Path) -> pb::ServerRequest {
    let mut req = inform_init(id, dir);
    if let Some(ServerRequestType::InformInit(init)) = &mut req.server_request_type {
        init.settings.as_mut().unwrap().x_disable_stats = Some(true);
    }
    req
}

/// A row with one scalar.
fn loss(id: &str, i: usize) -> pb::ServerRequest {
    row(
        id,
        "",
        vec![item("loss", &format!("{}", 1.0 / (i + 1) as f64))],
    )
}

#[test]
fn sixty_four_clients_logging_into_one_service_lose_nothing() {
    within(
        LIMIT,
        sixty_four_clients_logging_into_one_service_lose_nothing_body,
    );
}

fn sixty_four_clients_logging_into_one_service_lose_nothing_body() {
    const CLIENTS: usize = 64;
    const ROWS: usize = 10_000;
    let (mut child, socket, dir) = start(&["--pid", &std::process::id().to_string()]);
    let pid = child.id();
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (socket, dir) = (socket.clone(), dir.join(format!("c{n}")));
            std::thread::spawn(move || {
                std::fs::create_dir_all(&dir).unwrap();
                let id = format!("load{n}");
                let mut c = Client::connect(&socket);
                c.0.set_read_timeout(Some(Duration::from_secs(120)))
                    .unwrap();
                c.send(&quiet_init(&id, &dir));
                c.answer(&format!("init-{id}"));
                c.send(&run_record(&id, "run"));
                c.answer("run");
                let mut frames = Vec::new();
                for i in 0..ROWS {
                    encode_frame(&loss(&id, i).encode_to_vec(), &mut frames);
                }
                c.send_raw(&frames);
                c.send(&record(&id, "exit", RecordType::Exit(Default::default())));
                c.answer("exit");
                dir.join(format!("run-{id}.wandb"))
            })
        })
        .collect();
    let logs: Vec<_> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    let elapsed = started.elapsed();
    let (peak, _) = memory_kib(pid);
    let cpu = cpu_seconds(pid);
    Client::connect(&socket).send(&teardown());
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    for log in &logs {
        assert_eq!(history_rows(log), ROWS, "{}", log.display());
    }
    eprintln!(
        "{CLIENTS} clients x {ROWS} rows: all {} rows in {:.1} s, service peak RSS {} MiB, CPU {cpu:.1} s",
        CLIENTS * ROWS,
        elapsed.as_secs_f64(),
        peak / 1024
    );
}

#[test]
fn over_a_thousand_runs_open_at_once_in_one_service() {
    within(LIMIT, over_a_thousand_runs_open_at_once_in_one_service_body);
}

fn over_a_thousand_runs_open_at_once_in_one_service_body() {
    // More runs than the usual soft limit of 1,024 open files, which the
    // service is started with here and raises to the hard limit (each
    // open run holds its log open).
    const RUNS: usize = 1200;
    let dir = testkit::scratch_dir("load-runs");
    let port_file = dir.join("port.txt");
    let mut cmd = service();
    cmd.arg("--port-filename")
        .arg(&port_file)
        .args(["--pid", &std::process::id().to_string()]);
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = limit.rlim_max.min(1024);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            Ok(())
        });
    }
    let mut child = ServiceChild(cmd.spawn().unwrap());
    let socket = wait_port_file(&port_file);
    let pid = child.id();
    let mut c = Client::connect(&socket);
    c.0.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    for n in 0..RUNS {
        let id = format!("many{n}");
        let run_dir = dir.join(&id);
        std::fs::create_dir_all(&run_dir).unwrap();
        c.send(&quiet_init(&id, &run_dir));
        c.answer(&format!("init-{id}"));
        c.send(&run_record(&id, "run"));
        c.answer("run");
        c.send(&loss(&id, n));
    }
    let (peak, _) = memory_kib(pid);
    let fds = open_fds(pid);
    for n in 0..RUNS {
        let id = format!("many{n}");
        c.send(&record(
            &id,
            &format!("exit-{n}"),
            RecordType::Exit(Default::default()),
        ));
    }
    // Runs finish in any order.
    let mut due: std::collections::HashSet<String> =
        (0..RUNS).map(|n| format!("exit-{n}")).collect();
    while !due.is_empty() {
        due.remove(&c.recv().expect("every exit answered").request_id);
    }
    c.send(&teardown());
    assert!(wait_exit(&mut child, Duration::from_secs(120)).success());
    for n in 0..RUNS {
        let log = dir.join(format!("many{n}/run-many{n}.wandb"));
        assert_eq!(history_rows(&log), 1, "{}", log.display());
    }
    eprintln!(
        "{RUNS} runs open at once: peak RSS {} MiB, {fds} open files",
        peak / 1024
    );
}

#[test]
fn ten_thousand_connections_leave_no_descriptor_or_memory_behind() {
    within(
        LIMIT,
        ten_thousand_connections_leave_no_descriptor_or_memory_behind_body,
    );
}

fn ten_thousand_connections_leave_no_descriptor_or_memory_behind_body() {
    const CONNECTIONS: usize = 10_000;
    let (mut child, socket, _dir) = start(&["--pid", &std::process::id().to_string()]);
    let pid = child.id();
    let ask = |n: usize| {
        let mut c = Client::connect(&socket);
        let id = format!("q{n}");
        c.send(&request(
            "nosuchrun",
            &id,
            RequestType::HistoryStep(Default::default()),
        ));
        c.expect_error(&id, "nosuchrun");
    };
    // Warm up (thread stacks, allocator arenas), then measure.
    for n in 0..200 {
        ask(n);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (fds0, (_, rss0)) = (open_fds(pid), memory_kib(pid));
    for n in 0..CONNECTIONS {
        ask(n);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let (fds, rss) = loop {
        let (fds, (_, rss)) = (open_fds(pid), memory_kib(pid));
        if fds <= fds0 || Instant::now() > deadline {
            break (fds, rss);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Client::connect(&socket).send(&teardown());
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    assert!(fds <= fds0, "{fds} descriptors open after, {fds0} before");
    assert!(
        rss < rss0 + 16 * 1024,
        "RSS {} MiB after, {} MiB before",
        rss / 1024,
        rss0 / 1024
    );
    eprintln!(
        "{CONNECTIONS} connections: descriptors {fds0} -> {fds}, RSS {} -> {} MiB",
        rss0 / 1024,
        rss / 1024
    );
}
