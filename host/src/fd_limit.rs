//! The process's open-file limit: raised to the hard limit at start (a login shell or a systemd
//! unit without `LimitNOFILE` gives 1,024), and split so that CL-side connections can never
//! take the descriptors eb needs to reach its ELs.

/// Descriptors kept for everything but CL-side connections: each EL's connection pool (queued
/// calls, reads, health checks and hedges run at once), the vote recording, the policy file,
/// logs, the runtime's own.
pub const RESERVED: u64 = 512;

/// Where a hard limit of "unlimited" is raised to (Linux's default `fs.nr_open`).
const UNLIMITED_TARGET: u64 = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit eb now has
/// (`None` where it cannot be read).
#[cfg(unix)]
pub fn raise() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(UNLIMITED_TARGET);
    let soft = limit.current.unwrap_or(UNLIMITED_TARGET);
    if soft >= hard {
        return Some(soft);
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Some(hard),
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit");
            Some(soft)
        }
    }
}

/// Not a Unix: nothing to raise, nothing known.
#[cfg(not(unix))]
pub fn raise() -> Option<u64> {
    None
}

/// How many connections the listeners may hold at once given `limit` open files: what the
/// operator asked for (`engine`, `admin`), cut so that [`RESERVED`] descriptors stay free.
/// At least one connection each, so eb still serves on a tiny limit (with a warning).
pub fn share(limit: Option<u64>, engine: usize, admin: usize) -> (usize, usize) {
    let Some(limit) = limit else {
        return (engine, admin);
    };
    let free = usize::try_from(limit.saturating_sub(RESERVED)).unwrap_or(usize::MAX);
    let admin = admin.min(free / 8).max(1);
    let engine = engine.min(free.saturating_sub(admin)).max(1);
    (engine, admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_leave_the_reserve_free() {
        assert_eq!(share(Some(1 << 20), 256, 32), (256, 32));
        assert_eq!(share(None, 256, 32), (256, 32));
        // 1,024 open files: 512 kept, the admin API gets at most an eighth of the rest.
        assert_eq!(share(Some(1024), 2048, 32), (480, 32));
        assert_eq!(share(Some(600), 256, 32), (77, 11));
        assert_eq!(share(Some(100), 256, 32), (1, 1));
    }

    #[cfg(unix)]
    #[test]
    fn raising_reaches_the_hard_limit() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let now = raise().expect("readable on Unix");
        assert_eq!(Some(now), limit.maximum.or(Some(now)));
    }
}
