//! Subprocesses with a time limit.
//!
//! A test that runs the SDK, a service or any other program must never
//! stall the suite: [`CommandExt::output_within`] (and `output_limited`,
//! with [`LIMIT`]) runs the command in a process group of its own,
//! captures its output, and past the limit kills the whole group (what
//! the program started with it, unless it left the group) and fails the
//! test with what the program printed. [`within`] gives a test body that
//! drives a service in-process (the Rust SDK) the same limit, and
//! [`finished_within`] a thread the test joins.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest any one program of a test may run.
pub const LIMIT: Duration = Duration::from_secs(300);

/// How much of each stream a timeout's message shows.
const TAIL: usize = 4000;

/// How long a program's output may stay open after it ended (held by a
/// process it started outside its group).
const PIPE_GRACE: Duration = Duration::from_secs(30);

/// One output stream, read on a thread as it comes.
struct Pipe {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Pipe {
    fn read(mut pipe: Box<dyn Read + Send>) -> Self {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Pipe { buf, thread }
    }

    /// What was read, once the stream closed or `until` passed.
    fn finish(self, until: Instant) -> Vec<u8> {
        while !self.thread.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::mem::take(&mut *self.buf.lock().unwrap())
    }
}

pub trait CommandExt {
    /// Like [`Command::output`], failing the test past `limit`.
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output>;

    /// [`output_within`](Self::output_within) with [`LIMIT`].
    fn output_limited(&mut self) -> std::io::Result<Output> {
        self.output_within(LIMIT)
    }

    /// Like [`Command::status`] (output inherited), failing the test past
    /// [`LIMIT`].
    fn status_limited(&mut self) -> std::io::Result<ExitStatus>;
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let start = text.len().saturating_sub(TAIL);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// Kills the process group `pid` leads.
fn kill_group(pid: u32) {
    // SAFETY: signalling a process group this test created.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
}

impl CommandExt for Command {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output> {
        let program = format!("{:?}", self);
        let mut child = self
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = Pipe::read(Box::new(child.stdout.take().expect("piped")));
        let stderr = Pipe::read(Box::new(child.stderr.take().expect("piped")));
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                kill_group(child.id());
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // A process the program started may still hold the pipes (the
        // SDK starts its service in a session of its own): it gets a while
        // to let go, then what was read is what there is. After a normal
        // exit, what the program left running is the test's to judge.
        let until = Instant::now() + PIPE_GRACE;
        let stdout = stdout.finish(until);
        let stderr = stderr.finish(until);
        match status {
            Some(status) => Ok(Output {
                status,
                stdout,
                stderr,
            }),
            None => panic!(
                "{program} still ran after {limit:?}: killed\n--- stdout (end) ---\n{}\n--- stderr (end) ---\n{}",
                tail(&stdout),
                tail(&stderr)
            ),
        }
    }

    fn status_limited(&mut self) -> std::io::Result<ExitStatus> {
        let program = format!("{:?}", self);
        let mut child = self.process_group(0).spawn()?;
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                kill_group(child.id());
                let _ = child.wait();
                panic!("{program} still ran after {LIMIT:?}: killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits for a thread (`is_finished` asks it) at most `limit`; past it
/// the test fails, naming `what`. For threads a test must join, scoped
/// ones included, whose work has limits of its own.
pub fn finished_within(is_finished: impl Fn() -> bool, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while !is_finished() {
        assert!(
            Instant::now() < deadline,
            "{what}: not done after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a test's body with a time limit: past it the test fails. The
/// body's thread is left behind; what it started ends with the test
/// process (a service we launch watches its parent).
pub fn within<F: FnOnce() + Send + 'static>(limit: Duration, body: F) {
    let (done, finished) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => {
            let _ = thread.join();
        }
        // The body panicked: fail with its panic.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test still ran after {limit:?}")
        }
    }
}

/// A process's `VmHWM` (peak resident memory) and `VmRSS`, in KiB, from
/// `/proc/<pid>/status`.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} for process {pid}"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_past_its_limit_fails_and_a_panic_is_the_bodys() {
        let late = std::panic::catch_unwind(|| {
            within(Duration::from_millis(50), || {
                std::thread::sleep(Duration::from_secs(5))
            })
        });
        let message = *late.expect_err("late").downcast::<String>().unwrap();
        assert!(message.contains("still ran after"), "{message}");
        let failed = std::panic::catch_unwind(|| within(LIMIT, || panic!("the body's own")));
        let message = *failed.expect_err("panicked").downcast::<&str>().unwrap();
        assert_eq!(message, "the body's own");
        within(LIMIT, || {});
    }

    #[test]
    fn output_is_captured() {
        let out = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output_limited()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn a_hang_fails_with_what_was_printed_and_leaves_nothing_behind() {
        let marker = format!("testkit-hang-{}", std::process::id());
        // A grandchild that would outlive its parent, found by its odd
        // argument afterwards.
        let secs = format!("{}", 100_000 + std::process::id());
        let result = std::panic::catch_unwind(|| {
            Command::new("sh")
                .args([
                    "-c",
                    &format!("sleep {secs} & echo started {marker}; exec sleep {secs}"),
                ])
                .output_within(Duration::from_millis(500))
        });
        let message = *result
            .expect_err("the hang fails")
            .downcast::<String>()
            .unwrap();
        assert!(message.contains("still ran after"), "{message}");
        assert!(message.contains(&marker), "{message}");
        std::thread::sleep(Duration::from_millis(100));
        let wanted = format!("sleep\0{secs}\0");
        let left = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .filter(|c| c == wanted.as_bytes())
            .count();
        assert_eq!(left, 0, "the grandchild was killed too");
    }
}
