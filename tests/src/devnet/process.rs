//! Processes the devnet starts: each in its own process group, its output in a log file, and
//! stopped (the whole group) when its handle is dropped, so a failing run leaves nothing behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A started process; dropping it kills its process group.
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `program args…` in `dir` (where clients drop files of their own), in its own
    /// process group, stdout and stderr to `log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        dir: &Path,
        log: &Path,
    ) -> Result<Service, String> {
        use std::os::unix::process::CommandExt;
        let fail = |e: std::io::Error| format!("cannot start {name} ({}): {e}", program.display());
        let out = File::create(log).map_err(fail)?;
        let err = out.try_clone().map_err(fail)?;
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(fail)?;
        Ok(Service {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Some(exit status)` once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM to the group, waits up to `grace` (sending SIGTERM again halfway: Lodestar
    /// sometimes needs a second one), then SIGKILL. Returns how long it took to exit.
    pub fn stop(mut self, grace: Duration) -> Duration {
        let start = Instant::now();
        self.signal("TERM");
        let mut again = true;
        while start.elapsed() < grace {
            if self.exited().is_some() {
                return start.elapsed();
            }
            if again && start.elapsed() > grace / 2 {
                self.signal("TERM");
                again = false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
        start.elapsed()
    }

    /// SIGKILL to the group, then reaps the process.
    pub fn kill(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    fn signal(&self, signal: &str) {
        // The group: the process and whatever it started (npm shims, worker processes).
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), "--", &format!("-{}", self.pid())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Always the whole group: the leader may be gone while something it started is not.
        self.kill();
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A free TCP port on 127.0.0.1 (bound, then released for the process that will use it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
