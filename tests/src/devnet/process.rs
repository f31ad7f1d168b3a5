//! Processes the devnet starts: each in its own process group, its output in a log file, and
//! stopped (the whole group) when its handle is dropped, so a failing run leaves nothing behind.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A started process; dropping it kills its process group.
pub struct Service {
    name: String,
    pid: u32,
    child: Mutex<Child>,
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
            pid: child.id(),
            child: Mutex::new(child),
            log: log.to_owned(),
        })
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(exit status)` once it has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    /// Sends SIGTERM to the group, waits up to `grace` (sending SIGTERM again halfway: Lodestar
    /// sometimes needs a second one), then SIGKILL. Returns how long it took to exit.
    pub fn stop(self, grace: Duration) -> Duration {
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
    pub fn kill(&self) {
        self.signal("KILL");
        let _ = self.child().wait();
    }

    /// SIGSTOP to the group: frozen, as a stuck VM or a stop-the-world pause (sockets stay
    /// open); with `frozen` false, SIGCONT: running again.
    pub fn freeze(&self, frozen: bool) {
        self.signal(if frozen { "STOP" } else { "CONT" });
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

/// `N` distinct free TCP ports on 127.0.0.1 (all bound at once, then released for the
/// processes that will use them).
pub fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    let list = free_port_list(N)?;
    let mut out = [0; N];
    out.copy_from_slice(&list);
    Ok(out)
}

/// `n` distinct free TCP ports on 127.0.0.1, as [`free_ports`] finds them.
pub fn free_port_list(n: usize) -> Result<Vec<u16>, String> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
        held.push(listener);
    }
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

/// Waits for SIGINT or SIGTERM; its name.
pub async fn stopped() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

/// A devnet binary's `main`: drives `run` on a runtime; its report is the last stdout line
/// (exit 0), a failure `NAME: FAILED: …` on stderr (exit 1).
pub fn report_of(
    name: &str,
    run: impl Future<Output = Result<serde_json::Value, String>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
