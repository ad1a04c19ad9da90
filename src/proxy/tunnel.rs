//! Upgraded connections (WebSocket and the like): the client's and the application's byte
//! streams joined. A tunnel has no next request to check, so it re-checks its certificate each
//! time the revocation snapshot changes, and closes as soon as a new request would be refused.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::{Connection, policy};
use crate::config::Route;
use crate::http::client::Conn;
use crate::model::Clock;
use crate::revocation::Standing;

/// Joins the two upgraded sides in a task of their own.
pub(super) fn tunnel(
    client: OnUpgrade,
    mut upstream: Box<Conn>,
    connection: Arc<Connection>,
    route: Route,
    standing: Standing,
    clock: Arc<dyn Clock>,
) {
    tokio::spawn(async move {
        let client = match client.await {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(error = %err, "protocol upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut changes = standing.changes();
        let refused = async {
            loop {
                if changes.changed().await.is_err() {
                    // The snapshot is gone: the server is stopping.
                    return std::future::pending::<policy::Denied>().await;
                }
                let snapshot = standing.snapshot();
                if let Err(denied) =
                    policy::authorize(&connection.cert, &route, clock.unix(), &snapshot)
                {
                    return denied;
                }
            }
        };
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut *upstream) => {
                if let Err(err) = copied {
                    tracing::debug!(error = %err, "upgraded connection ended");
                }
            }
            denied = refused => {
                tracing::info!(peer = %connection.peer, reason = ?denied, "closing an upgraded connection: its certificate is refused now");
            }
        }
    });
}
