//! Service mode and the shared-service commands (`start`, `stop`).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use prost::Message;
use wandb_proto::frame::encode_frame;
use wandb_proto::pb;
use wandb_proto::token::{PortFile, ServiceAddr, ServiceToken};
use wandb_service::{Service, ServiceOptions};

/// The long flags W&B's wandb-core takes (see `go_style_args`).
pub const LONG_FLAGS: &[&str] = &[
    "port-filename",
    "pid",
    "detached",
    "idle-timeout",
    "log-level",
    "no-observability",
    "os-pid-shutdown",
    "enable-dcgm-profiling",
    "listen-on-localhost",
];

/// The flags of W&B's wandb-core, accepted with the same meaning.
#[derive(clap::Args, Debug)]
pub struct ServiceArgs {
    /// Where to write the port file.
    #[arg(long, default_value = "port_file.txt")]
    port_filename: PathBuf,
    /// PID of the launching process; the service exits when it is gone.
    #[arg(long, default_value_t = 0)]
    pid: u32,
    /// Ignore the launching process's lifetime.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    detached: bool,
    /// With --detached: exit after this long without a connection (Go
    /// duration, e.g. 30s, 10m, 1h30m; 0 disables).
    #[arg(long, default_value = "10m", value_parser = parse_go_duration)]
    idle_timeout: Duration,
    /// -4 debug, 0 info, 4 warn, 8 error.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    log_level: i32,
    /// Accepted for compatibility; wandb-core-rs sends no telemetry.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    no_observability: bool,
    /// Exit when the parent process exits (Linux: the kernel signals us).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    os_pid_shutdown: bool,
    /// Accepted for compatibility; GPU profiling is not collected.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    enable_dcgm_profiling: bool,
    /// Also listen on a TCP port on localhost.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    listen_on_localhost: bool,
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), optionally signed; `0` alone.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {text:?} (examples: 30s, 10m, 1h30m, 0)");
    let s = text.strip_prefix('+').unwrap_or(text);
    if s.starts_with('-') {
        return Err(format!("negative duration {text:?}"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Ok(Duration::from_secs_f64(total))
}

/// Where users choose a stricter [`wandb_service::Durability`]: the SDK starts the
/// service with its own flags, so only the environment reaches it.
const DURABILITY_ENV: &str = "WANDB_CORE_DURABILITY";

/// The durability asked for in the environment. A value we do not know
/// must not stop training: it is reported and the default kept.
fn durability_from_env() -> wandb_service::Durability {
    let Ok(text) = std::env::var(DURABILITY_ENV) else {
        return Default::default();
    };
    text.parse().unwrap_or_else(|e: String| {
        tracing::warn!("{DURABILITY_ENV}: {e}; using buffered");
        eprintln!("wandb-core: {DURABILITY_ENV}: {e}; using buffered");
        Default::default()
    })
}

/// Runs the service until it is told to stop or its launcher is gone.
pub fn serve(args: &ServiceArgs) -> anyhow::Result<ExitCode> {
    return_large_buffers_to_the_system();
    allow_as_many_files_as_permitted();
    let core_log = crate::logging::init(args.log_level);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        ?args,
        "wandb-core-rs starting"
    );
    let options = ServiceOptions {
        port_filename: Some(args.port_filename.clone()),
        core_log,
        parent_pid: (args.pid != 0).then_some(args.pid),
        detached: args.detached,
        idle_timeout: Some(args.idle_timeout),
        listen_on_localhost: args.listen_on_localhost,
        os_pid_shutdown: args.os_pid_shutdown,
        durability: durability_from_env(),
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let reason = runtime.block_on(async {
        let service = Service::bind(options).await.with_context(|| {
            format!(
                "listen and write the port file {}",
                args.port_filename.display()
            )
        })?;
        anyhow::Ok(service.run().await)
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(ExitCode::from(reason.exit_status() as u8))
}

/// Buffers of a megabyte or more (an online run's pending file stream
/// request) go straight to and from the system. glibc otherwise raises its
/// mmap threshold after the first such buffer is freed and serves the next
/// from whichever thread's arena the task runs on, keeping freed copies
/// resident: measured with `wandb-bench --online`, peak RSS varied between
/// 20 and 24 MiB from run to run, and is 20 MiB every time with this.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator parameter; called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Raises the soft limit on open files to the hard one, as Go programs
/// (W&B's wandb-core among them) do at start: each open run holds its log
/// open, and the usual soft limit of 1,024 would refuse the thousandth run
/// of a shared service.
fn allow_as_many_files_as_permitted() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[derive(clap::Args)]
pub struct StartArgs {
    /// Exit after this long with no connected client (Go duration; 0: never).
    #[arg(long, default_value = "10m", value_parser = parse_go_duration)]
    idle_timeout: Duration,
}

/// Starts a detached service (in its own session, output discarded), waits
/// for its port file and prints the token.
pub fn start(args: &StartArgs) -> anyhow::Result<ExitCode> {
    if let Some(token) = std::env::var("WANDB_SERVICE")
        .ok()
        .filter(|t| !t.is_empty())
    {
        bail!("WANDB_SERVICE is already set ({token}); clear it or `wandb-core stop` first");
    }
    let dir = std::env::temp_dir().join(format!("wandb-core-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port_file = dir.join("port.txt");
    let exe = std::env::current_exe().context("find our own binary")?;
    let mut child = Command::new(exe)
        .arg("--port-filename")
        .arg(&port_file)
        .arg("--detached")
        .arg(format!(
            "--idle-timeout={}s",
            args.idle_timeout.as_secs_f64()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("start the service")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let announced = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Some(file) = PortFile::parse(&text)?
        {
            break file;
        }
        if let Some(status) = child.try_wait()? {
            bail!("the service exited before it was ready ({status})");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the service did not write its port file within 30s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = std::fs::remove_dir_all(&dir);
    let addr = match (announced.unix, announced.tcp) {
        (Some(path), _) => ServiceAddr::Unix(path),
        (None, Some(port)) => ServiceAddr::Tcp(port),
        (None, None) => bail!("the port file names no listener"),
    };
    let token = ServiceToken {
        parent_pid: std::process::id(),
        addr,
    };
    eprintln!(
        "Started detached wandb-core-rs service (pid {}).",
        child.id()
    );
    println!("{token}");
    eprintln!("Idle shutdown: {:?}.", args.idle_timeout);
    eprintln!("Set WANDB_SERVICE to this value before starting worker processes: {token}");
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// The service's token (default: $WANDB_SERVICE).
    token: Option<String>,
    /// Exit code for runs that did not finish.
    #[arg(long, default_value_t = 0)]
    exit_code: i32,
}

/// Sends `inform_teardown` and waits until the service has removed its
/// socket (it finishes every run first).
pub fn stop(args: &StopArgs) -> anyhow::Result<ExitCode> {
    let text = match &args.token {
        Some(t) => t.clone(),
        None => {
            std::env::var("WANDB_SERVICE").context("no token given and WANDB_SERVICE is not set")?
        }
    };
    let token: ServiceToken = text.parse()?;
    let request = pb::ServerRequest {
        server_request_type: Some(pb::server_request::ServerRequestType::InformTeardown(
            pb::ServerInformTeardownRequest {
                exit_code: args.exit_code,
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let mut frame = Vec::new();
    encode_frame(&request.encode_to_vec(), &mut frame);
    match &token.addr {
        ServiceAddr::Unix(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(path)
                .with_context(|| format!("connect to {}", path.display()))?;
            s.write_all(&frame)?;
            wait_closed(&mut s);
            let deadline = Instant::now() + Duration::from_secs(60);
            while path.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        ServiceAddr::Tcp(port) => {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", *port))
                .with_context(|| format!("connect to localhost:{port}"))?;
            s.write_all(&frame)?;
            wait_closed(&mut s);
        }
    }
    eprintln!(
        "Sent shutdown request to wandb-core; unset WANDB_SERVICE in shells that still set it."
    );
    Ok(ExitCode::SUCCESS)
}

/// The service closes connections once every run is finished.
fn wait_closed(s: &mut impl Read) {
    let mut buf = [0u8; 1024];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_go_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_go_duration("2.5s").unwrap(),
            Duration::from_millis(2500)
        );
        for bad in ["", "10", "1d", "-5s", "s", "1h30"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
