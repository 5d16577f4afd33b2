//! The shutdown tree. Sockets hang off the process's root token (cancelled by a
//! signal, by a test, or by a failing role); the roles hang off their own token,
//! cancelled only once the sockets are closed, so they flush and commit what the
//! sockets handed them. Every role runs on one tracker, so the drain can wait for
//! all of them, and the first role that fails is remembered: the process then exits
//! non-zero, so an orchestrator sees the crash.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A role that returned an error.
#[derive(Debug, thiserror::Error)]
#[error("role {role} failed: {error}")]
pub(crate) struct RoleFailed {
    pub(crate) role: &'static str,
    pub(crate) error: String,
}

/// The roles of one process under one tracker.
pub(crate) struct Roles {
    tracker: TaskTracker,
    /// Parent of every role's token.
    stop: CancellationToken,
    /// Cancelled by the first failing role: the process must stop.
    failing: CancellationToken,
    failed: Arc<Mutex<Option<RoleFailed>>>,
}

impl Roles {
    pub(crate) fn new() -> Self {
        Self {
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
            failing: CancellationToken::new(),
            failed: Arc::default(),
        }
    }

    /// Runs `role` until it returns or its token (a child of the roles' token) is
    /// cancelled. An error stops the process.
    pub(crate) fn spawn<F, Fut>(&self, name: &'static str, role: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let fut = role(self.stop.child_token());
        let failing = self.failing.clone();
        let failed = self.failed.clone();
        self.tracker.spawn(async move {
            if let Err(e) = fut.await {
                tracing::error!(
                    role = name,
                    error = format!("{e:#}"),
                    "role failed; stopping"
                );
                failed.lock().unwrap().get_or_insert(RoleFailed {
                    role: name,
                    error: format!("{e:#}"),
                });
                failing.cancel();
            }
        });
    }

    /// Resolves when a role has failed.
    pub(crate) async fn failed(&self) {
        self.failing.cancelled().await
    }

    /// Stops every role and waits for them until `deadline`; the first failure, if
    /// any role failed (before or during the drain).
    pub(crate) async fn drain(&self, deadline: Instant) -> Result<(), RoleFailed> {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("roles did not stop by the drain deadline");
        }
        match self.failed.lock().unwrap().take() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_failing_role_stops_the_others_and_is_reported() {
        let roles = Roles::new();
        roles.spawn("steady", |stop| async move {
            stop.cancelled().await;
            Ok(())
        });
        roles.spawn("broken", |_| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            anyhow::bail!("disk on fire")
        });
        tokio::time::timeout(Duration::from_secs(5), roles.failed())
            .await
            .expect("the failure is signalled");
        let err = roles
            .drain(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.role, "broken");
        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert!(roles.tracker.is_empty(), "every role has stopped");
    }

    #[tokio::test]
    async fn a_clean_drain_is_ok_and_bounded_by_the_deadline() {
        let roles = Roles::new();
        roles.spawn("steady", |stop| async move {
            stop.cancelled().await;
            Ok(())
        });
        roles
            .drain(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();

        let roles = Roles::new();
        roles.spawn("stuck", |_| std::future::pending());
        let start = Instant::now();
        roles
            .drain(start + Duration::from_millis(200))
            .await
            .unwrap();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
}
