//! The HTTP side of `--web`: one router, one thin function per route over
//! the shared [`Hub`], the page's files embedded at build time. Read-only:
//! every route is a GET.

use std::{
    collections::VecDeque, convert::Infallible, net::SocketAddr, sync::Arc, thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    middleware,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::get,
    Router,
};
use futures_util::Stream;
use tokio::sync::{broadcast, oneshot, watch};

use super::{lifecycle_json, Hub, Snapshot};
use crate::attribute::Lifecycle;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// Only the page's own files; the stream and the state from the same origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The running server: stops (without waiting for it) when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds here (so that a taken port is an error now, not later) and
    /// serves from a thread of its own with its own small runtime.
    pub fn start(addr: SocketAddr, hub: Hub) -> Result<Server> {
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!("listen on {addr} for --web (is the port taken? try --web 127.0.0.1:PORT)")
        })?;
        listener
            .set_nonblocking(true)
            .context("make the --web listener non-blocking")?;
        let addr = listener.local_addr().context("read the --web address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("observer-web".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("warning: --web: start the server's runtime: {e}; no page");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("warning: --web: {e}; no page");
                            return;
                        }
                    };
                    let serve = axum::serve(listener, router(hub)).with_graceful_shutdown(async {
                        let _ = stopped.await;
                    });
                    if let Err(e) = serve.await {
                        eprintln!("warning: --web: the server stopped: {e}");
                    }
                });
            })
            .context("start the --web thread")?;
        Ok(Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops accepting and waits (up to `limit`) for the open streams to end.
    pub fn shutdown(mut self, limit: Duration) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + limit;
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn router(hub: Hub) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/favicon.svg", get(favicon))
        .route("/api/state", get(api_state))
        .route("/events", get(events))
        .fallback(not_found)
        .layer(middleware::map_response(security_headers))
        .with_state(hub)
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The state changes every interval; the page is small and comes with
    // the binary: nothing is worth a stale copy.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn api_state(State(hub): State<Hub>) -> Response {
    let s = hub.snapshot.borrow().clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.state.clone(),
    )
        .into_response()
}

async fn events(State(hub): State<Hub>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(client_stream(hub)).keep_alive(KeepAlive::default())
}

/// One reader's stream: the kernel once, the current state, then each new
/// state and every lifecycle event. At most one state is ever pending (the
/// `watch` keeps only the latest) and lifecycle events come from a bounded
/// ring: a reader that does not keep up skips ahead.
pub fn client_stream(hub: Hub) -> impl Stream<Item = Result<Event, Infallible>> {
    struct Client {
        snapshot: watch::Receiver<Arc<Snapshot>>,
        lifecycle: broadcast::Receiver<Lifecycle>,
        clock: i64,
        pending: VecDeque<Event>,
        open: bool,
    }
    let mut snapshot = hub.snapshot.clone();
    let first = snapshot.borrow_and_update().clone();
    let pending = VecDeque::from([
        Event::default().event("kernel").data(first.kernel.as_str()),
        Event::default().event("state").data(first.state.as_str()),
        Event::default().event("live").data(first.live.as_str()),
    ]);
    let client = Client {
        snapshot,
        lifecycle: hub.lifecycle.subscribe(),
        clock: hub.clock,
        pending,
        open: true,
    };
    futures_util::stream::unfold(client, |mut c| async move {
        loop {
            if let Some(e) = c.pending.pop_front() {
                return Some((Ok(e), c));
            }
            if !c.open {
                return None;
            }
            tokio::select! {
                // Lifecycle events first: they happened before the state
                // that follows them.
                biased;
                r = c.lifecycle.recv() => match r {
                    Ok(l) => c.pending.push_back(
                        Event::default().event("container").data(lifecycle_json(&l, c.clock)),
                    ),
                    // Older lifecycle events are gone; the next state has
                    // every container anyway.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => c.open = false,
                },
                changed = c.snapshot.changed() => {
                    if changed.is_err() {
                        // The observer is stopping.
                        c.open = false;
                        continue;
                    }
                    let s = c.snapshot.borrow_and_update().clone();
                    c.pending.push_back(Event::default().event("state").data(s.state.as_str()));
                    c.pending.push_back(Event::default().event("live").data(s.live.as_str()));
                }
            }
        }
    })
}
