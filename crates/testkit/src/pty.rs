//! A program on a pseudo-terminal, and the screen it drew: for testing
//! (and timing) terminal UIs as a user sees them. The screen is read
//! through a terminal emulator (vt100); the program runs in a session of
//! its own, with the pty as its controlling terminal, and is killed with
//! that session past the limit or when the [`Tty`] is dropped.

use std::io::{Read as _, Write as _};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A program on a pseudo-terminal, and the screen it drew.
pub struct Tty {
    pub child: Child,
    master: std::fs::File,
    screen: Arc<Mutex<vt100::Parser>>,
    limit: Duration,
}

impl Tty {
    /// Starts `cmd` on a new pty of `cols` × `rows`; every wait on it
    /// fails past `limit`.
    pub fn spawn(cols: u16, rows: u16, limit: Duration, mut cmd: Command) -> Tty {
        let mut master = -1;
        let mut slave = -1;
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors; the size is read only.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        cmd.stdin(io(&slave)).stdout(io(&slave)).stderr(io(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec: a new
        // session (so the whole tree is killed as one group) whose
        // controlling terminal is the pty.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        drop(slave);
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
        let mut reader = master.try_clone().unwrap();
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            // Ends when the program's side closes (EIO) or the test drops it.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().process(&buf[..n]);
            }
        });
        Tty {
            child,
            master,
            screen,
            limit,
        }
    }

    /// The screen's text, row by row.
    pub fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows `text`; fails with the screen past
    /// the limit (or when the program exits first). Returns the wait.
    pub fn wait_for(&mut self, text: &str) -> Duration {
        self.wait_until(&format!("{text:?} on screen"), |screen| {
            screen.contains(text)
        })
    }

    /// Waits until `ready` holds for the screen's text (see [`Tty::wait_for`]).
    pub fn wait_until(&mut self, what: &str, ready: impl Fn(&str) -> bool) -> Duration {
        let start = Instant::now();
        let mut exited: Option<Instant> = None;
        loop {
            if ready(&self.contents()) {
                return start.elapsed();
            }
            // After an exit, a moment for the last output to be read.
            if let Ok(Some(status)) = self.child.try_wait() {
                let at = *exited.get_or_insert_with(Instant::now);
                if at.elapsed() > Duration::from_secs(2) {
                    panic!("exited ({status}) before {what}:\n{}", self.contents());
                }
            }
            assert!(
                start.elapsed() < self.limit,
                "no {what} within {:?}:\n{}",
                self.limit,
                self.contents()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Types `keys`.
    pub fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// Waits for the program to exit; kills its session past the limit.
    pub fn exit_status(&mut self) -> std::process::ExitStatus {
        let until = Instant::now() + self.limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > until {
                self.kill();
                panic!(
                    "still running {:?} after quitting:\n{}",
                    self.limit,
                    self.contents()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Kills the program's session.
    pub fn kill(&mut self) {
        // SAFETY: signalling the session the child leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
