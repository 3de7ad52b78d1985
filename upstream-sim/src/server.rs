//! Serving a [`Simulator`]: its router, its server loop, and the [`Handle`] of a simulator
//! serving on a thread of its own.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::thread;

use tokio::sync::oneshot;

use crate::sim::Simulator;
use crate::state::State;

impl Simulator {
    /// Binds `addr` and serves `state` on a runtime of its own, on a thread of its own, until
    /// the handle is stopped or dropped. Usable from plain (blocking) tests.
    pub fn start(addr: impl ToSocketAddrs, state: State) -> Result<Handle, StartError> {
        let listener = std::net::TcpListener::bind(addr).map_err(StartError::Bind)?;
        listener.set_nonblocking(true).map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("upstream-sim")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(StartError::Bind)?
        };
        let sim = Simulator::new(state);
        let server = sim.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("upstream-sim".to_owned())
            .spawn(move || {
                // A dropped sender stops the server as well as a sent stop.
                runtime.block_on(server.serve(listener, async {
                    let _ = stopped.await;
                }));
            })
            .map_err(StartError::Runtime)?;
        tracing::info!("upstream simulator listening on http://{addr}/billmgr");
        Ok(Handle {
            sim,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The HTTP application: `/billmgr`, `/manager/billmgr` and the control API under `/sim/`.
    /// Serve it with [`Simulator::serve`] for [`Fault::Cut`] to work.
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.clone())
    }

    /// Serves [`Simulator::router`] on `listener` until `shutdown` completes; open connections
    /// are then dropped.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        crate::http::serve(listener, self.router(), shutdown).await;
    }
}

/// Why a simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The address cannot be listened on.
    #[error("cannot listen: {0}")]
    Bind(io::Error),
    /// No runtime or thread for the server.
    #[error("cannot start the server's runtime: {0}")]
    Runtime(io::Error),
}

/// A simulator serving on its own thread; stopped by [`Handle::stop`] or when dropped.
pub struct Handle {
    sim: Simulator,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR/billmgr`: the API URL a client is configured with.
    pub fn billmgr_url(&self) -> String {
        format!("{}/billmgr", self.base_url())
    }

    /// The simulator, for its state, journal and faults.
    pub fn sim(&self) -> &Simulator {
        &self.sim
    }

    /// Stops serving and waits for the server thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
