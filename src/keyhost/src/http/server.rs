//! Running the keyhost: in a background thread ([`spawn`]) or in the foreground until a
//! signal ([`serve_blocking`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::data_dir;
use crate::domain::auth_audit;
use crate::error::{ApiError, KeyhostError};
use crate::http::background;
use crate::http::router;
use crate::state::AppState;

/// A keyhost running on its own tokio runtime in a background thread.
pub struct RunningKeyhost {
    url: String,
    keyhost_id: String,
    data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RunningKeyhost {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn keyhost_id(&self) -> &str {
        &self.keyhost_id
    }

    /// Path of the file holding the admin token (written at bootstrap, mode 0600).
    pub fn admin_token_path(&self) -> PathBuf {
        data_dir::admin_token_path(&self.data_dir)
    }

    /// Stop accepting connections, finish in-flight requests, and join the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningKeyhost {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, KeyhostError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ghostpii-keyhost")
        .enable_all()
        .build()
        .map_err(|e| KeyhostError::Runtime(format!("cannot start the tokio runtime: {e}")))
}

async fn bind(listen: &str) -> Result<(TcpListener, String), KeyhostError> {
    let listener = TcpListener::bind(listen).await.map_err(|e| KeyhostError::Bind {
        addr: listen.to_owned(),
        source: e,
    })?;
    let addr = listener.local_addr().map_err(|e| KeyhostError::Bind {
        addr: listen.to_owned(),
        source: e,
    })?;
    Ok((listener, format!("http://{addr}")))
}

/// Open the data dir and put the configured limits (with their environment overrides) in force.
fn open_state(config: &Config) -> Result<AppState, KeyhostError> {
    let limits = config.limits.clone().with_env()?;
    data_dir::open_on(&config.data_dir, config.database.as_deref(), &config.privacy)?.with_limits(limits)
}

/// Serve `state` on `listener` (with each client's address for the rate limit) until
/// `shutdown`, writing the counts of repeated refused authentications every half window and
/// at the end.
async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), KeyhostError> {
    let flusher = {
        let st = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(auth_audit::WINDOW / 2);
            loop {
                tick.tick().await;
                let st = st.clone();
                if let Err(e) = st.clone().blocking(move || st.flush_refused_auth(false)).await {
                    e.log_cause("writing refused authentications");
                }
            }
        })
    };
    let (stop_sequencer, stopped) = tokio::sync::watch::channel(false);
    let sequencer = tokio::spawn(background::run_sequencer(
        state.clone(),
        state.database().cloned(),
        stopped,
    ));
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    flusher.abort();
    let st = state.clone();
    let flushed = state.blocking(move || st.flush_refused_auth(true)).await;
    let _ = stop_sequencer.send(true);
    let _ = sequencer.await;
    // a clean stop integrates what is queued (a killed keyhost leaves it to the next sequencer)
    let st = state.clone();
    let integrated = state.blocking(move || st.with_db(|c| st.integrate_audit(c))).await;
    served.map_err(|e| KeyhostError::Runtime(format!("server error: {e}")))?;
    let cause = |e: ApiError| e.cause.map_or(e.message, String::from);
    flushed.map_err(|e| KeyhostError::Runtime(format!("writing refused authentications: {}", cause(e))))?;
    integrated.map_err(|e| KeyhostError::Runtime(format!("integrating the audit queue: {}", cause(e))))
}

/// Open (or bootstrap) the data dir, bind, and serve in a background thread. Returns once
/// the socket is listening.
pub fn spawn(config: Config) -> Result<RunningKeyhost, KeyhostError> {
    let state = open_state(&config)?;
    let keyhost_id = state.keyhost_id().to_owned();
    let rt = runtime()?;
    let (listener, url) = rt.block_on(bind(&config.listen))?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("ghostpii-keyhost".into())
        .spawn(move || {
            rt.block_on(async move {
                let shutdown = async {
                    let _ = stop_rx.await;
                };
                if let Err(e) = serve(listener, state, shutdown).await {
                    eprintln!("ghostpii keyhost: {e}");
                }
            });
        })
        .map_err(|e| KeyhostError::Runtime(format!("cannot start the keyhost thread: {e}")))?;
    Ok(RunningKeyhost {
        url,
        keyhost_id,
        data_dir: config.data_dir,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

async fn shutdown_signal() {
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
}

/// Serve in the current thread until Ctrl-C or SIGTERM. `on_ready` gets the URL once the
/// socket is listening.
pub fn serve_blocking(config: Config, on_ready: impl FnOnce(&str)) -> Result<(), KeyhostError> {
    let state = open_state(&config)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let (listener, url) = bind(&config.listen).await?;
        on_ready(&url);
        serve(listener, state, shutdown_signal()).await
    })
}
