//! Helpers shared by the benches.

/// Drives a future that never waits (in-memory storage's never do) without a runtime,
/// so a measurement is the work itself and not an executor's overhead.
pub fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}
