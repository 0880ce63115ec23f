//! `observer cluster`: many kernels in one view, read from the Prometheus
//! that scrapes every node's observer. No eBPF and no privileges: one box
//! per kernel (node, release, boot ID) with the containers that share it and
//! their syscall rates.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::{body::Bytes, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;

/// One kernel and the containers that share it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Kernel {
    pub node: String,
    pub release: String,
    pub version: String,
    pub boot_id: String,
    pub containers: Vec<ContainerRate>,
}

/// A container's syscalls on its node's kernel, per second over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ContainerRate {
    /// Empty for the host's own processes.
    pub container: String,
    pub container_id: String,
    pub runtime: String,
    pub syscalls_per_sec: f64,
    /// Since its series began (what the counters hold now).
    pub syscalls_total: f64,
}

/// The whole view, as `--format json` prints it and the page shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClusterView {
    pub kernels: Vec<Kernel>,
}

/// A Prometheus server's HTTP API, at `http://host:port[/prefix]`.
#[derive(Clone, Debug)]
pub struct Prometheus {
    authority: String,
    prefix: String,
}

impl Prometheus {
    pub fn new(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--prometheus {url}: not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--prometheus {url}: only http:// URLs are supported (put a TLS proxy on loopback for https)");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--prometheus {url}: no host"))?
            .to_string();
        Ok(Prometheus {
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    async fn get(&self, path_and_query: &str) -> Result<Vec<u8>> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connect to Prometheus at {}", self.authority))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake with Prometheus")?;
        tokio::spawn(conn);
        let req = Request::get(format!("{}{path_and_query}", self.prefix))
            .header("host", &self.authority)
            .body(Empty::<Bytes>::new())
            .context("build the request")?;
        let resp = sender.send_request(req).await.context("query Prometheus")?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("read Prometheus' answer")?
            .to_bytes();
        if !status.is_success() {
            bail!(
                "Prometheus answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body.to_vec())
    }

    /// An instant query: the result vector.
    pub async fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let body = self
            .get(&format!("/api/v1/query?query={}", percent_encode(promql)))
            .await
            .with_context(|| format!("PromQL {promql}"))?;
        let v: Value = serde_json::from_slice(&body).context("Prometheus' answer is not JSON")?;
        if v["status"] != "success" {
            bail!("PromQL {promql}: {}", v["error"]);
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The PromQL behind the view, over a rate window such as `1m`.
pub fn queries(window: &str) -> [String; 3] {
    [
        "observer_kernel_info".to_owned(),
        format!(
            "sum by (node, container, container_id, runtime) (rate(observer_syscalls_total[{window}]))"
        ),
        "sum by (node, container, container_id, runtime) (observer_syscalls_total)".to_owned(),
    ]
}

fn label(sample: &Value, name: &str) -> String {
    sample["metric"][name]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Groups the query results: one kernel per (node, boot ID), its
/// containers busiest first. Pure: tests feed it Prometheus' JSON.
pub fn group(kernels: &[Value], rates: &[Value], totals: &[Value]) -> ClusterView {
    let mut by_node: BTreeMap<String, Vec<Kernel>> = BTreeMap::new();
    for k in kernels {
        by_node.entry(label(k, "node")).or_default().push(Kernel {
            node: label(k, "node"),
            release: label(k, "release"),
            version: label(k, "version"),
            boot_id: label(k, "boot_id"),
            containers: Vec::new(),
        });
    }
    let key = |s: &Value| {
        (
            label(s, "node"),
            label(s, "container_id"),
            label(s, "container"),
        )
    };
    let rate_of: BTreeMap<_, f64> = rates.iter().map(|s| (key(s), value(s))).collect();
    for t in totals {
        // The syscall counters have no boot ID: a node is one kernel at a
        // time (a rebooted node's old kernel_info goes stale).
        let Some(kernel) = by_node
            .get_mut(&label(t, "node"))
            .and_then(|v| v.last_mut())
        else {
            continue;
        };
        kernel.containers.push(ContainerRate {
            container: label(t, "container"),
            container_id: label(t, "container_id"),
            runtime: label(t, "runtime"),
            syscalls_per_sec: rate_of.get(&key(t)).copied().unwrap_or(0.0),
            syscalls_total: value(t),
        });
    }
    let mut view = ClusterView {
        kernels: by_node.into_values().flatten().collect(),
    };
    for k in &mut view.kernels {
        k.containers.sort_by(|a, b| {
            b.syscalls_per_sec
                .total_cmp(&a.syscalls_per_sec)
                .then_with(|| a.container.cmp(&b.container))
        });
    }
    view
}

/// Reads the view from Prometheus.
pub async fn fetch(prom: &Prometheus, window: &str) -> Result<ClusterView> {
    let [k, r, t] = queries(window);
    Ok(group(
        &prom.query(&k).await?,
        &prom.query(&r).await?,
        &prom.query(&t).await?,
    ))
}

/// One box per kernel, as text.
pub fn render_table(view: &ClusterView) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if view.kernels.is_empty() {
        s.push_str("no kernels: Prometheus has no observer_kernel_info series (is it scraping an observer --metrics?)\n");
    }
    for k in &view.kernels {
        let _ = writeln!(
            s,
            "kernel {}  boot_id {}  node {}  ({} container{})",
            k.release,
            k.boot_id,
            k.node,
            k.containers.len(),
            if k.containers.len() == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            s,
            "  {:<28} {:<12} {:>14} {:>14}",
            "CONTAINER", "RUNTIME", "SYSCALLS/S", "SYSCALLS"
        );
        for c in &k.containers {
            let name = if c.container.is_empty() {
                "(host)"
            } else {
                &c.container
            };
            let _ = writeln!(
                s,
                "  {:<28} {:<12} {:>14.1} {:>14}",
                name,
                if c.runtime.is_empty() {
                    "-"
                } else {
                    &c.runtime
                },
                c.syscalls_per_sec,
                c.syscalls_total
            );
        }
    }
    s
}

/// `observer cluster`: prints the view once, or serves it with `--web`.
pub async fn run(args: crate::cli::ClusterArgs) -> Result<()> {
    let prom = Prometheus::new(&args.prometheus)?;
    let Some(addr) = args.web else {
        let view = fetch(&prom, &args.window).await?;
        match args.format {
            crate::cli::Format::Json => {
                println!("{}", serde_json::to_string(&view).expect("serialises"))
            }
            crate::cli::Format::Table => print!("{}", render_table(&view)),
        }
        return Ok(());
    };
    serve(addr, prom, args.window).await
}

struct WebState {
    prom: Prometheus,
    window: String,
}

/// The room page's own stylesheet and icon: the cluster is drawn in the same
/// look, one kernel box per node instead of one for the room.
const STYLE_CSS: &str = include_str!("web/assets/style.css");
const CLUSTER_CSS: &str = include_str!("web/assets/cluster.css");
const FAVICON_SVG: &str = include_str!("web/assets/favicon.svg");

/// The page is drawn here, not by scripts: only its stylesheets and icon.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

async fn page(
    axum::extract::State(s): axum::extract::State<Arc<WebState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (status, html) = match fetch(&s.prom, &s.window).await {
        Ok(view) => (
            axum::http::StatusCode::OK,
            render_html(&view, &s.window, None),
        ),
        Err(e) => (
            axum::http::StatusCode::BAD_GATEWAY,
            render_html(&ClusterView::default(), &s.window, Some(&format!("{e:#}"))),
        ),
    };
    (
        status,
        [(axum::http::header::CONTENT_SECURITY_POLICY, CSP)],
        axum::response::Html(html),
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn api(
    axum::extract::State(s): axum::extract::State<Arc<WebState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match fetch(&s.prom, &s.window).await {
        Ok(view) => axum::Json(view).into_response(),
        Err(e) => (
            axum::http::StatusCode::BAD_GATEWAY,
            format!("observer cluster: {e:#}\n"),
        )
            .into_response(),
    }
}

async fn serve(addr: SocketAddr, prom: Prometheus, window: String) -> Result<()> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the cluster page to {addr} (--web ADDR)"))?;
    let bound = listener.local_addr().context("the page's address")?;
    if !bound.ip().is_loopback() {
        eprintln!("warning: the cluster page is served on {bound}, beyond loopback (read-only)");
    }
    eprintln!("observer cluster: http://{bound}/ (JSON at /api/cluster)");
    let app = axum::Router::new()
        .route("/", get(page))
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/cluster.css",
            get(|| async { asset("text/css; charset=utf-8", CLUSTER_CSS) }),
        )
        .route(
            "/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
        .route("/api/cluster", get(api))
        .with_state(Arc::new(WebState { prom, window }));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serve the cluster page")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The page, in the room page's look: per kernel, its box (release, node,
/// boot ID) with a card per container sharing it: its syscall rate and
/// total. Reloaded every 5 s; `error` (Prometheus unreachable) is shown in
/// the page's loss banner.
pub fn render_html(view: &ClusterView, window: &str, error: Option<&str>) -> String {
    use std::fmt::Write;
    // The host's own processes (container "") are not a container.
    let count = |k: &Kernel| {
        k.containers
            .iter()
            .filter(|c| !c.container.is_empty())
            .count()
    };
    let containers: usize = view.kernels.iter().map(count).sum();
    let mut s = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <meta http-equiv=\"refresh\" content=\"5\">\n\
         <title>One kernel per node</title>\n\
         <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\n\
         <link rel=\"stylesheet\" href=\"/style.css\">\n\
         <link rel=\"stylesheet\" href=\"/cluster.css\">\n\
         </head>\n<body>\n\
         <p id=\"sentence\" class=\"sentence cluster-sentence\">{}, {}: one kernel per node, shared by everything on it</p>\n",
        plural(view.kernels.len(), "kernel", "kernels"),
        plural(containers, "container", "containers"),
    );
    if let Some(e) = error {
        let _ = writeln!(
            s,
            "<div id=\"loss\" class=\"loss\">Prometheus did not answer: {}</div>",
            escape(e)
        );
    } else if view.kernels.is_empty() {
        s.push_str(
            "<p id=\"empty\" class=\"empty\">No kernels yet: Prometheus has no \
             <code>observer_kernel_info</code> series (is it scraping an \
             <code>observer --metrics</code>?)</p>\n",
        );
    }
    s.push_str("<main id=\"kernels\" class=\"cluster\">\n");
    for k in &view.kernels {
        let _ = write!(
            s,
            "<section class=\"node\" data-node=\"{node}\" data-boot-id=\"{boot}\">\n\
             <header class=\"kernel\">\n\
             <div class=\"kernel-label\">the one kernel this node's containers share</div>\n\
             <h1>Linux <span class=\"release\">{release}</span></h1>\n\
             <dl class=\"facts\">\n\
             <div><dt>node</dt><dd class=\"node-name\">{node}</dd></div>\n\
             <div><dt>boot ID</dt><dd class=\"boot-id\">{boot}</dd></div>\n\
             <div><dt>version</dt><dd>{version}</dd></div>\n\
             </dl>\n\
             <p class=\"sentence\">{n}, 1 kernel</p>\n\
             </header>\n<div class=\"cards\">\n",
            node = escape(&k.node),
            boot = escape(&k.boot_id),
            release = escape(&k.release),
            version = escape(&k.version),
            n = plural(count(k), "container", "containers"),
        );
        for c in &k.containers {
            let name = if c.container.is_empty() {
                "(host)".to_owned()
            } else {
                escape(&c.container)
            };
            let short: String = c.container_id.chars().take(12).collect();
            let meta = [escape(&short), escape(&c.runtime)]
                .into_iter()
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join(" · ");
            let _ = write!(
                s,
                "<section class=\"card\" data-container-id=\"{id}\" data-total=\"{total}\">\n\
                 <div class=\"card-head\"><h2 class=\"name\">{name}</h2></div>\n\
                 <div class=\"meta\">{meta}</div>\n\
                 <div class=\"rate\">{rate:.1}<small> syscalls/s</small></div>\n\
                 <div class=\"total\">{total} syscalls into this kernel</div>\n\
                 </section>\n",
                id = escape(&c.container_id),
                total = c.syscalls_total,
                meta = if meta.is_empty() {
                    "host".to_owned()
                } else {
                    meta
                },
                rate = c.syscalls_per_sec,
            );
        }
        s.push_str("</div>\n</section>\n");
    }
    let _ = write!(
        s,
        "</main>\n<footer><span class=\"status\">from Prometheus · rates over {} · \
         reloaded every 5 s</span></footer>\n</body>\n</html>\n",
        escape(window)
    );
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn groups_containers_under_their_nodes_kernel() {
        let kernels = vec![
            json!({"metric": {"node": "a", "release": "6.18", "version": "#1", "boot_id": "b-a"}, "value": [1, "1"]}),
            json!({"metric": {"node": "vm", "release": "6.1", "version": "#2", "boot_id": "b-vm"}, "value": [1, "1"]}),
        ];
        let s = |node: &str, c: &str, v: &str| json!({"metric": {"node": node, "container": c, "container_id": format!("{c}-id"), "runtime": "docker"}, "value": [1, v]});
        let rates = vec![s("a", "web", "10.5"), s("a", "db", "99"), s("vm", "", "3")];
        let totals = vec![
            s("a", "web", "1000"),
            s("a", "db", "5000"),
            s("vm", "", "30"),
            s("gone", "x", "1"),
        ];
        let v = group(&kernels, &rates, &totals);
        assert_eq!(v.kernels.len(), 2);
        assert_eq!(v.kernels[0].boot_id, "b-a");
        let names: Vec<&str> = v.kernels[0]
            .containers
            .iter()
            .map(|c| c.container.as_str())
            .collect();
        assert_eq!(names, ["db", "web"], "busiest first");
        assert_eq!(v.kernels[0].containers[1].syscalls_per_sec, 10.5);
        assert_eq!(v.kernels[0].containers[1].syscalls_total, 1000.0);
        assert_eq!(v.kernels[1].containers.len(), 1);
        let t = render_table(&v);
        assert!(t.contains("kernel 6.1  boot_id b-vm  node vm"), "{t}");
        assert!(t.contains("(host)"));
        let h = render_html(&v, "1m", None);
        assert_eq!(h.matches("<header class=\"kernel\">").count(), 2);
        assert!(h.contains("data-boot-id=\"b-vm\""));
        assert!(h.contains("data-container-id=\"db-id\""));
        assert!(
            h.contains("2 kernels, 2 containers"),
            "the host is none: {h}"
        );
        assert!(h.contains("<link rel=\"stylesheet\" href=\"/style.css\">"));
        let mut evil = v.clone();
        evil.kernels[0].containers[0].container = "<script>".into();
        assert!(!render_html(&evil, "1m", None).contains("<script>"));
        let e = render_html(&ClusterView::default(), "1m", Some("connect: refused"));
        assert!(e.contains("class=\"loss\""), "{e}");
    }

    #[test]
    fn parses_prometheus_urls_and_encodes_queries() {
        let p = Prometheus::new("http://127.0.0.1:9090/prom/").unwrap();
        assert_eq!(
            (p.authority.as_str(), p.prefix.as_str()),
            ("127.0.0.1:9090", "/prom")
        );
        assert!(Prometheus::new("https://x:1").is_err());
        assert_eq!(
            percent_encode("a{b=\"c\"}[1m]"),
            "a%7Bb%3D%22c%22%7D%5B1m%5D"
        );
    }
}
