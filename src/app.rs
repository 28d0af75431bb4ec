//! Wiring: open the store, start the core, bind the listener, serve until told to stop.
//! Tests build the real [`App`] on port 0 exactly as `koji serve` does.

use crate::config::Config;
use crate::conversation::Core;
use crate::domain::{Clock, SystemClock};
use crate::store::{Store, StoreError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Opens the configured database and applies migrations.
pub async fn open_store(config: &Config, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
    let store = Store::connect(
        &config.database.url,
        config.database.synchronous == "full",
        config.database.max_connections,
        clock,
    )
    .await?;
    store.migrate().await?;
    Ok(store)
}

/// Opens the store and starts the core (and its group-commit writer).
pub async fn start_core(
    config: Config,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<Core>, tokio::task::JoinHandle<()>), StoreError> {
    let store = open_store(&config, clock).await?;
    Core::start(Arc::new(config), store).await
}

pub struct App {
    core: Arc<Core>,
    writer: tokio::task::JoinHandle<()>,
    listener: TcpListener,
    addr: SocketAddr,
}

impl App {
    pub async fn build(config: Config) -> Result<App, AppError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<App, AppError> {
        let listen = config.server.listen.clone();
        let (core, writer) = start_core(config, clock).await?;
        let listener = TcpListener::bind(&listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: listen.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(AppError::Serve)?;
        Ok(App {
            core,
            writer,
            listener,
            addr,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn core(&self) -> Arc<Core> {
        self.core.clone()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests, commits what is
    /// queued and closes the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let App {
            core,
            writer,
            listener,
            addr,
        } = self;
        let sweeper = {
            let core = core.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    if let Err(e) = core.sweep_idle_sessions().await {
                        tracing::warn!(error = %e, "could not end idle sessions");
                    }
                }
            })
        };
        tracing::info!(%addr, database = core.store.backend(), "koji serving");
        let router = crate::server::router(core.clone());
        let socket = crate::server::slack_socket_mode(&core);
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        if let Some(socket) = socket {
            socket.stop().await;
        }
        sweeper.abort();
        if let Err(e) = core.flush().await {
            tracing::warn!(error = %e, "final commit failed");
        }
        let store = core.store.clone();
        drop(core);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), writer).await;
        store.close().await;
        tracing::info!("koji stopped");
        served.map_err(AppError::Serve)
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
