//! Graceful-stop signals for the `auth-backend` and `auth-web` binaries.
//!
//! Compiled without the `server` feature, so that a front end built on the `client`
//! feature alone (such as `auth-web`) stops the same way as the backend does.

use std::future::Future;

/// A future that resolves on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
///
/// The handlers are installed when this function returns, not when the future is first
/// polled, so a signal that arrives before serving starts is not lost (and does not kill
/// the process with the default action). Call it before binding or connecting anything.
///
/// # Errors
///
/// The operating system refused to install a handler.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C received");
        })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn a_sigterm_before_the_first_poll_is_not_lost() {
        let shutdown = super::shutdown_signal().expect("signal handlers");
        // Not polled yet. Without a handler installed, this would end the test process.
        // SAFETY: raising a signal in our own process, whose handler is installed.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        tokio::time::timeout(Duration::from_secs(10), shutdown)
            .await
            .expect("the future resolves on the signal raised before it was polled");
    }
}
