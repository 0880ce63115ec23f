//! The `/metrics` endpoint: one route, read-only, encoding the registry on
//! each scrape.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use prometheus_client::registry::Registry;

/// Prometheus' text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        super::encode(&registry),
    )
}

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry)
}

/// Binds `addr` and serves `/metrics` in the background until the runtime
/// stops. A bind that is not loopback is warned about: anyone who reaches
/// the address reads what runs on this kernel.
pub async fn spawn(addr: SocketAddr, registry: Arc<Registry>) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the metrics endpoint to {addr} (--metrics ADDR)"))?;
    let bound = listener
        .local_addr()
        .context("the metrics endpoint's address")?;
    if !bound.ip().is_loopback() {
        eprintln!(
            "warning: metrics served on {bound}, beyond loopback: whoever reaches it sees every container on this kernel (read-only)"
        );
    }
    eprintln!("observer: metrics at http://{bound}/metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(registry)).await {
            eprintln!("warning: the metrics endpoint stopped: {e}");
        }
    });
    Ok(bound)
}
