//! Container names and images from the engines' APIs (Docker, Podman's
//! Docker-compatible socket, containerd's gRPC socket), with the runtimes'
//! own state on disk as the fallback (Docker's and Podman's container
//! configs, LXC's). Runs beside the event path: requests in, replies out,
//! never blocking it.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use bollard::{query_parameters::EventsOptions, Docker};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{containerd, disk, parse::Runtime, Kubernetes};

#[derive(Clone, Debug)]
pub struct NameRequest {
    pub runtime: Runtime,
    pub id: String,
    /// For Kubernetes: the engine underneath, when the cgroup path says.
    pub engine: Option<Runtime>,
    /// For containerd: the namespace the container lives in.
    pub namespace: Option<String>,
}

impl NameRequest {
    pub fn new(runtime: Runtime, id: &str) -> Self {
        NameRequest {
            runtime,
            id: id.to_owned(),
            engine: None,
            namespace: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameReply {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub kubernetes: Option<Kubernetes>,
    /// Why there is no name, when there is none (one warning per cause).
    pub problem: Option<String>,
}

#[derive(Clone, Debug)]
pub struct EngineSockets {
    pub docker: PathBuf,
    pub podman: PathBuf,
    pub containerd: PathBuf,
    /// Where Docker keeps `containers/<id>/config.v2.json`.
    pub docker_root: PathBuf,
    /// Podman's container store (containers/storage's graph root).
    pub podman_root: PathBuf,
    /// LXC's container directory (`lxc.lxcpath`).
    pub lxc_path: PathBuf,
    pub timeout: Duration,
}

impl Default for EngineSockets {
    fn default() -> Self {
        EngineSockets {
            docker: "/var/run/docker.sock".into(),
            podman: "/run/podman/podman.sock".into(),
            containerd: "/run/containerd/containerd.sock".into(),
            docker_root: "/var/lib/docker".into(),
            podman_root: "/var/lib/containers/storage".into(),
            lxc_path: "/var/lib/lxc".into(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// The parts of Docker's `config.v2.json` we read.
#[derive(Deserialize)]
struct DiskConfig {
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "Config")]
    config: Option<DiskInner>,
}

#[derive(Deserialize)]
struct DiskInner {
    #[serde(rename = "Image")]
    image: Option<String>,
}

/// Pure: name and image from a `config.v2.json`.
pub fn parse_disk_config(json: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let c: DiskConfig = serde_json::from_slice(json).ok()?;
    Some((
        c.name.map(|n| n.trim_start_matches('/').to_owned()),
        c.config.and_then(|i| i.image),
    ))
}

async fn connect(path: &Path, timeout: Duration) -> Result<Docker, String> {
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    let docker = Docker::connect_with_unix(
        &path.to_string_lossy(),
        timeout.as_secs().max(1),
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| format!("connect to {}: {e}", path.display()))?;
    // Older engines refuse a client newer than they are: agree on a version.
    match tokio::time::timeout(timeout, docker.negotiate_version()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(format!("{}: {e}", path.display())),
        Err(_) => Err(format!(
            "{} did not answer within {timeout:?}",
            path.display()
        )),
    }
}

async fn inspect(
    docker: &Docker,
    id: &str,
    timeout: Duration,
) -> Result<(Option<String>, Option<String>), String> {
    match tokio::time::timeout(timeout, docker.inspect_container(id, None)).await {
        Ok(Ok(r)) => Ok((
            r.name.map(|n| n.trim_start_matches('/').to_owned()),
            r.config.and_then(|c| c.image),
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("inspect {id} timed out after {timeout:?}")),
    }
}

/// Name and image of a container.
type Names = (Option<String>, Option<String>);

/// Names and images announced by the engine's event stream, by container
/// ID. A container is created before its cgroup exists, so its name is
/// usually here before its first event: even a `docker run --rm` that lives
/// for milliseconds, and is gone before an inspect could answer, is named.
#[derive(Clone, Default)]
pub struct Announced(Arc<Mutex<HashMap<String, Names>>>);

impl Announced {
    const MAX: usize = 4096;

    fn get(&self, id: &str) -> Option<Names> {
        self.0.lock().ok()?.get(id).cloned()
    }

    fn insert(&self, id: String, name: Option<String>, image: Option<String>) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= Self::MAX {
                m.clear();
            }
            m.insert(id, (name, image));
        }
    }
}

/// Follows Docker's event stream (container create/start/rename), and
/// reconnects after the engine goes away, with a pause between attempts.
async fn follow_events(path: PathBuf, timeout: Duration, announced: Announced) {
    loop {
        if let Ok(docker) = connect(&path, timeout).await {
            let filters = HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                (
                    "event".to_owned(),
                    vec!["create".to_owned(), "start".to_owned(), "rename".to_owned()],
                ),
            ]);
            let mut stream = docker.events(Some(EventsOptions {
                filters: Some(filters),
                ..Default::default()
            }));
            while let Some(Ok(ev)) = stream.next().await {
                let Some(actor) = ev.actor else { continue };
                let (Some(id), Some(attrs)) = (actor.id, actor.attributes) else {
                    continue;
                };
                announced.insert(id, attrs.get("name").cloned(), attrs.get("image").cloned());
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Asks whoever can name this runtime's containers.
async fn lookup(
    sockets: &EngineSockets,
    clients: &mut Clients,
    announced: &Announced,
    req: &NameRequest,
) -> NameReply {
    match (req.runtime, req.engine) {
        (Runtime::Lxc, _) => NameReply {
            id: req.id.clone(),
            name: Some(req.id.clone()),
            image: disk::lxc_image(&sockets.lxc_path, &req.id).await,
            ..Default::default()
        },
        (Runtime::Containerd, _) => {
            let ns = req.namespace.as_deref().unwrap_or("default");
            containerd_lookup(sockets, clients, ns, &req.id).await
        }
        (Runtime::Kubernetes, Some(Runtime::Crio)) => NameReply {
            id: req.id.clone(),
            problem: Some("CRI-O containers are not named (no CRI-O client)".into()),
            ..Default::default()
        },
        (Runtime::Kubernetes, Some(Runtime::Docker)) => {
            engine_lookup(sockets, clients, announced, req).await
        }
        (Runtime::Kubernetes, _) => {
            // The kubelet's containerd keeps its containers in "k8s.io"; a
            // bare ID under a pod may also be dockershim's.
            let reply =
                containerd_lookup(sockets, clients, containerd::CRI_NAMESPACE, &req.id).await;
            if reply.name.is_some() || req.engine.is_some() {
                return reply;
            }
            let docker = engine_lookup(sockets, clients, announced, req).await;
            if docker.name.is_some() {
                docker
            } else {
                reply
            }
        }
        _ => engine_lookup(sockets, clients, announced, req).await,
    }
}

async fn containerd_lookup(
    sockets: &EngineSockets,
    clients: &mut Clients,
    namespace: &str,
    id: &str,
) -> NameReply {
    let mut reply = NameReply {
        id: id.to_owned(),
        ..Default::default()
    };
    if clients.containerd.is_none() {
        match containerd::connect(&sockets.containerd, sockets.timeout).await {
            Ok(ch) => clients.containerd = Some(ch),
            Err(e) => {
                reply.problem = Some(e);
                return reply;
            }
        }
    }
    let Some(ch) = clients.containerd.as_ref() else {
        return reply;
    };
    match containerd::get(ch, namespace, id, sockets.timeout).await {
        Ok(n) => {
            reply.name = n.name;
            reply.image = n.image;
            reply.kubernetes = n.kubernetes;
        }
        Err(e) => {
            // A hung or restarted containerd: dial again next time.
            if e.contains("timed out") || e.contains("not ready") {
                clients.containerd = None;
            }
            reply.problem = Some(e);
        }
    }
    reply
}

/// Docker's API (or Podman's Docker-compatible one), then their state on disk.
async fn engine_lookup(
    sockets: &EngineSockets,
    clients: &mut Clients,
    announced: &Announced,
    req: &NameRequest,
) -> NameReply {
    let mut reply = NameReply {
        id: req.id.clone(),
        ..Default::default()
    };
    if let Some((name, image)) = announced.get(&req.id) {
        reply.name = name;
        reply.image = image;
        return reply;
    }
    let (slot, path) = match req.runtime {
        Runtime::Podman => (&mut clients.podman, &sockets.podman),
        _ => (&mut clients.docker, &sockets.docker),
    };
    if slot.is_none() {
        match connect(path, sockets.timeout).await {
            Ok(d) => *slot = Some(d),
            Err(e) => reply.problem = Some(e),
        }
    }
    if let Some(docker) = slot.as_ref() {
        match inspect(docker, &req.id, sockets.timeout).await {
            Ok((name, image)) => {
                reply.name = name;
                reply.image = image;
                return reply;
            }
            Err(e) => {
                // The event may have arrived meanwhile.
                if let Some((name, image)) = announced.get(&req.id) {
                    reply.name = name;
                    reply.image = image;
                    return reply;
                }
                reply.problem = Some(e);
            }
        }
    }
    if req.runtime == Runtime::Podman {
        if let Some((name, image)) = disk::podman_names(&sockets.podman_root, &req.id).await {
            reply.name = name;
            reply.image = image;
            reply.problem = None;
        }
    }
    if req.runtime == Runtime::Docker {
        let file = sockets
            .docker_root
            .join("containers")
            .join(&req.id)
            .join("config.v2.json");
        if let Ok(bytes) = tokio::fs::read(&file).await {
            if let Some((name, image)) = parse_disk_config(&bytes) {
                reply.name = name;
                reply.image = image;
            }
        }
    }
    reply
}

#[derive(Default)]
struct Clients {
    docker: Option<Docker>,
    podman: Option<Docker>,
    containerd: Option<tonic::transport::Channel>,
}

/// Serves name requests until the request channel closes.
pub async fn resolver(
    sockets: EngineSockets,
    mut rx: mpsc::Receiver<NameRequest>,
    tx: mpsc::UnboundedSender<NameReply>,
) {
    let mut clients = Clients::default();
    let announced = Announced::default();
    let events = tokio::spawn(follow_events(
        sockets.docker.clone(),
        sockets.timeout,
        announced.clone(),
    ));
    while let Some(req) = rx.recv().await {
        let reply = lookup(&sockets, &mut clients, &announced, &req).await;
        if tx.send(reply).is_err() {
            break;
        }
    }
    events.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dockers_on_disk_config() {
        // Trimmed from a real /var/lib/docker/containers/<id>/config.v2.json.
        let json = br#"{"StreamConfig":{},"State":{"Running":true,"Pid":4242},"ID":"3f4e","Created":"2026-11-26T10:00:00Z","Path":"uname","Args":["-r"],"Config":{"Hostname":"3f4e8c2a1b0d","Image":"alpine","Cmd":["uname","-r"]},"Image":"sha256:abcd","Name":"/quirky_turing","Driver":"overlay2"}"#;
        assert_eq!(
            parse_disk_config(json),
            Some((Some("quirky_turing".to_owned()), Some("alpine".to_owned())))
        );
        assert_eq!(parse_disk_config(b"{}"), Some((None, None)));
        assert_eq!(parse_disk_config(b"not json"), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_socket_is_a_reply_not_a_hang() {
        let sockets = EngineSockets {
            docker: "/nonexistent/docker.sock".into(),
            podman: "/nonexistent/podman.sock".into(),
            docker_root: "/nonexistent".into(),
            timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let (req_tx, req_rx) = mpsc::channel(4);
        let (rep_tx, mut rep_rx) = mpsc::unbounded_channel();
        tokio::spawn(resolver(sockets, req_rx, rep_tx));
        req_tx
            .try_send(NameRequest::new(Runtime::Docker, &"ab".repeat(32)))
            .unwrap();
        let reply = rep_rx.recv().await.unwrap();
        assert_eq!(reply.name, None);
        assert!(reply.problem.unwrap().contains("does not exist"));
    }

    /// A socket that accepts and never answers: the lookup gives up on time.
    #[tokio::test(flavor = "current_thread")]
    async fn a_hanging_engine_times_out() {
        let dir = std::env::temp_dir().join(format!("observer-hang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("docker.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let sockets = EngineSockets {
            docker: sock.clone(),
            podman: "/nonexistent".into(),
            docker_root: "/nonexistent".into(),
            timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let mut clients = Clients::default();
        let start = std::time::Instant::now();
        let reply = lookup(
            &sockets,
            &mut clients,
            &Announced::default(),
            &NameRequest::new(Runtime::Docker, &"cd".repeat(32)),
        )
        .await;
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "took {:?}",
            start.elapsed()
        );
        assert!(reply.problem.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
