//! The modes, one file each: what one operation is and how a worker loops
//! over them. `worker` picks the loop for `full`, `resume` and `keepalive`;
//! `idle` is not a per-worker loop and is run by `run` through `idle::run`.

use std::sync::Arc;

use crate::cli::Mode;
use crate::conn::Shared;
use crate::stats::Stats;

pub(crate) mod idle;
mod keepalive_h1;
mod keepalive_h2;
mod one_shot;

/// One worker of a `full`, `resume` or `keepalive` run, until the run ends.
pub(crate) async fn worker(shared: Arc<Shared>) -> Stats {
    match (shared.mode, shared.http2) {
        (Mode::Keepalive, true) => keepalive_h2::run(shared).await,
        (Mode::Keepalive, false) => keepalive_h1::run(shared).await,
        (Mode::Full | Mode::Resume, _) => one_shot::run(shared).await,
        (Mode::Idle, _) => Stats::default(),
    }
}
