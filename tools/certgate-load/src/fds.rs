//! File descriptors: every connection holds one, so the soft RLIMIT_NOFILE
//! is raised to the hard limit at start and a `--concurrency` that still
//! cannot fit is refused up front rather than failing mid-run with EMFILE.

use crate::cli::SetupError;

/// Descriptors beyond the connections: stdio, the runtime's epoll and
/// eventfd, and connections closing while others open.
const SPARE_FDS: u64 = 64;

/// Raises the soft RLIMIT_NOFILE to the hard limit and checks that
/// `concurrency` connections fit.
#[cfg(unix)]
pub(crate) fn raise_fd_limit(concurrency: u32) -> Result<(), SetupError> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let needed = u64::from(concurrency) + SPARE_FDS;
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let mut soft = limit.current.unwrap_or(u64::MAX);
    if soft < needed && soft < hard {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            soft = hard;
        }
    }
    if soft < needed {
        return Err(SetupError::Fds {
            concurrency,
            needed,
            soft,
            hard,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn raise_fd_limit(_concurrency: u32) -> Result<(), SetupError> {
    Ok(())
}
