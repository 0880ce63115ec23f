//! Container labels and image from containerd's API (gRPC over its unix
//! socket): Kubernetes pod names from the CRI's `io.kubernetes.*` labels,
//! nerdctl names from `nerdctl/name`, plain `ctr` containers by their ID.
//!
//! One call is needed (`containers.v1.Containers/Get`), so its three
//! messages are declared here with prost's derive rather than generated:
//! the `containerd-client` crate compiles containerd's protos in its build
//! script, which needs `protoc` on the build machine. The field numbers are
//! those of containerd's `api/services/containers/v1/containers.proto`
//! (<https://github.com/containerd/containerd/blob/v1.6.20/api/services/containers/v1/containers.proto>);
//! fields not declared here are skipped when decoding.

use std::{collections::HashMap, path::Path, time::Duration};

use hyper_util::rt::TokioIo;
use tonic::{
    codegen::http::uri::PathAndQuery,
    transport::{Channel, Endpoint, Uri},
};

use super::Kubernetes;

/// The containerd namespace of the kubelet's CRI plugin.
pub const CRI_NAMESPACE: &str = "k8s.io";

const GET: &str = "/containerd.services.containers.v1.Containers/Get";

#[derive(Clone, PartialEq, prost::Message)]
struct GetContainerRequest {
    #[prost(string, tag = "1")]
    id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetContainerResponse {
    #[prost(message, optional, tag = "1")]
    container: Option<ContainerMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ContainerMsg {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(map = "string, string", tag = "2")]
    labels: HashMap<String, String>,
    #[prost(string, tag = "3")]
    image: String,
}

/// What containerd knows of a container, as the observer reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Named {
    pub name: Option<String>,
    pub image: Option<String>,
    pub kubernetes: Option<Kubernetes>,
}

/// Pure: a container's name from its labels. Kubernetes containers are
/// named by their pod (`kubectl get pod NAME`), with the pod's namespace and
/// the container's name beside it; nerdctl's by `nerdctl/name`; the rest
/// (plain `ctr run IMAGE ID`) by their ID, which is the name ctr knows.
pub fn named(id: &str, labels: &HashMap<String, String>, image: &str) -> Named {
    let label = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
    let image = (!image.is_empty()).then(|| image.to_owned());
    if let Some(pod) = label("io.kubernetes.pod.name") {
        return Named {
            name: Some(pod.clone()),
            image,
            kubernetes: Some(Kubernetes {
                pod,
                namespace: label("io.kubernetes.pod.namespace"),
                container: label("io.kubernetes.container.name"),
            }),
        };
    }
    Named {
        name: label("nerdctl/name").or_else(|| Some(id.to_owned())),
        image,
        kubernetes: None,
    }
}

/// Opens a channel to containerd's socket (HTTP/2 over the unix socket).
pub async fn connect(path: &Path, timeout: Duration) -> Result<Channel, String> {
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    let socket = path.to_path_buf();
    // The URI is required by the API and unused: the connector below dials
    // the socket whatever it says.
    let endpoint = Endpoint::from_static("http://containerd.sock")
        .connect_timeout(timeout)
        .timeout(timeout);
    let connect = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        async move {
            Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?))
        }
    }));
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(ch)) => Ok(ch),
        Ok(Err(e)) => Err(format!("connect to {}: {e}", path.display())),
        Err(_) => Err(format!(
            "{} did not answer within {timeout:?}",
            path.display()
        )),
    }
}

/// `Containers/Get` of `id` in `namespace`.
pub async fn get(
    channel: &Channel,
    namespace: &str,
    id: &str,
    timeout: Duration,
) -> Result<Named, String> {
    let call = async {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready()
            .await
            .map_err(|e| format!("containerd not ready: {e}"))?;
        let mut req = tonic::Request::new(GetContainerRequest { id: id.to_owned() });
        req.metadata_mut().insert(
            "containerd-namespace",
            namespace
                .parse()
                .map_err(|_| format!("bad containerd namespace {namespace:?}"))?,
        );
        let resp: tonic::Response<GetContainerResponse> = grpc
            .unary(
                req,
                PathAndQuery::from_static(GET),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => format!("containerd has no container {namespace}/{id}"),
                _ => format!("containerd get {namespace}/{id}: {}", s.message()),
            })?;
        let c = resp
            .into_inner()
            .container
            .ok_or_else(|| format!("containerd returned no container for {namespace}/{id}"))?;
        Ok(named(&c.id, &c.labels, &c.image))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "containerd get {namespace}/{id} timed out after {timeout:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn names_from_the_labels_each_client_sets() {
        // The labels the kubelet's CRI plugin sets on a container.
        let cri = labels(&[
            ("io.kubernetes.pod.name", "web-0"),
            ("io.kubernetes.pod.namespace", "shop"),
            (
                "io.kubernetes.pod.uid",
                "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            ),
            ("io.kubernetes.container.name", "nginx"),
            ("io.cri-containerd.kind", "container"),
        ]);
        assert_eq!(
            named("ab12", &cri, "docker.io/library/nginx:1.25"),
            Named {
                name: Some("web-0".into()),
                image: Some("docker.io/library/nginx:1.25".into()),
                kubernetes: Some(Kubernetes {
                    pod: "web-0".into(),
                    namespace: Some("shop".into()),
                    container: Some("nginx".into()),
                }),
            }
        );
        let nerdctl = labels(&[("nerdctl/name", "redis"), ("nerdctl/namespace", "default")]);
        assert_eq!(named("cd34", &nerdctl, "").name.as_deref(), Some("redis"));
        assert_eq!(named("cd34", &nerdctl, "").image, None);
        // Plain ctr: the ID is the name it was given.
        let plain = named("my-redis", &HashMap::new(), "docker.io/library/redis:7");
        assert_eq!(plain.name.as_deref(), Some("my-redis"));
        assert_eq!(plain.kubernetes, None);
        // An empty label is no name.
        let empty = labels(&[("io.kubernetes.pod.name", ""), ("nerdctl/name", "")]);
        assert_eq!(named("ef56", &empty, "").name.as_deref(), Some("ef56"));
    }

    #[test]
    fn the_message_layout_decodes_what_containerd_sends() {
        use prost::Message;
        // A Container as containerd encodes it, with fields we do not
        // declare (runtime = 4, snapshotter = 6) that must be skipped.
        let full = ContainerMsg {
            id: "c1".into(),
            labels: labels(&[("nerdctl/name", "db")]),
            image: "img".into(),
        };
        let mut bytes = GetContainerResponse {
            container: Some(full.clone()),
        }
        .encode_to_vec();
        // Append to the inner message: rewrite as outer(tag 1, len) + inner + extra.
        let mut inner = full.encode_to_vec();
        inner.extend_from_slice(&[0x22, 0x02, 0x0a, 0x00]); // runtime { name: "" }
        inner.extend_from_slice(&[0x32, 0x09]);
        inner.extend_from_slice(b"overlayfs"); // snapshotter
        bytes.clear();
        bytes.push(0x0a);
        bytes.push(inner.len() as u8);
        bytes.extend_from_slice(&inner);
        let got = GetContainerResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(got.container, Some(full));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_or_hanging_socket_is_an_error_on_time() {
        let err = connect(
            Path::new("/nonexistent/containerd.sock"),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(err.contains("does not exist"), "{err}");

        let dir = std::env::temp_dir().join(format!("observer-ctrd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("containerd.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let start = std::time::Instant::now();
        let timeout = Duration::from_millis(300);
        let r = match connect(&sock, timeout).await {
            Ok(ch) => get(&ch, "default", "x", timeout).await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(r.is_err());
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "took {:?}",
            start.elapsed()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
