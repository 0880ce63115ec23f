//! Names from the runtimes' own state on disk, where no API answers:
//! Podman's container store (`containers.json`, kept by containers/storage
//! whether or not `podman system service` runs) and LXC's per-container
//! `config` (which template or image a container was made from).

use std::path::Path;

use serde::Deserialize;

/// One entry of containers/storage's `<driver>-containers/containers.json`.
#[derive(Deserialize)]
struct StoredContainer {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    /// Podman's own JSON, as a string: `{"image-name": …, "name": …}`.
    #[serde(default)]
    metadata: String,
}

#[derive(Deserialize)]
struct PodmanMetadata {
    #[serde(rename = "image-name")]
    image_name: Option<String>,
    name: Option<String>,
}

/// Pure: name and image of container `id` in a `containers.json`.
pub fn parse_podman_store(json: &[u8], id: &str) -> Option<(Option<String>, Option<String>)> {
    let all: Vec<StoredContainer> = serde_json::from_slice(json).ok()?;
    let c = all.into_iter().find(|c| c.id == id)?;
    let meta: Option<PodmanMetadata> = serde_json::from_str(&c.metadata).ok();
    let (meta_name, image) = meta.map(|m| (m.name, m.image_name)).unwrap_or_default();
    Some((c.names.into_iter().next().or(meta_name), image))
}

/// Name and image of a Podman container from the store under `root`
/// (`/var/lib/containers/storage` for root), whatever its storage driver.
pub async fn podman_names(root: &Path, id: &str) -> Option<(Option<String>, Option<String>)> {
    for driver in ["overlay", "vfs", "btrfs", "zfs"] {
        let file = root
            .join(format!("{driver}-containers"))
            .join("containers.json");
        if let Ok(bytes) = tokio::fs::read(&file).await {
            if let Some(found) = parse_podman_store(&bytes, id) {
                return Some(found);
            }
        }
    }
    None
}

/// Pure: what an LXC container was made from, from its `config`: the
/// template's name (`lxc-busybox` -> `busybox`), and for the `download`
/// template the distribution and release it fetched (`alpine:3.19`).
pub fn parse_lxc_config(config: &str) -> Option<String> {
    let mut template = None;
    let mut params: Vec<&str> = Vec::new();
    for line in config.lines() {
        if let Some(t) = line.strip_prefix("# Template used to create this container:") {
            let base = t.trim().rsplit('/').next().unwrap_or("");
            template = Some(base.strip_prefix("lxc-").unwrap_or(base).to_owned());
        } else if let Some(p) = line.strip_prefix("# Parameters passed to the template:") {
            params = p.split_whitespace().collect();
        }
    }
    let template = template.filter(|t| !t.is_empty())?;
    if template == "download" {
        let arg = |short: &str, long: &str| {
            params
                .iter()
                .position(|p| *p == short || *p == long)
                .and_then(|i| params.get(i + 1).copied())
        };
        if let Some(dist) = arg("-d", "--dist") {
            return Some(match arg("-r", "--release") {
                Some(rel) => format!("{dist}:{rel}"),
                None => dist.to_owned(),
            });
        }
    }
    Some(template)
}

/// The image (template) of LXC container `name` under `lxc_path`
/// (`/var/lib/lxc` for root).
pub async fn lxc_image(lxc_path: &Path, name: &str) -> Option<String> {
    let config = tokio::fs::read_to_string(lxc_path.join(name).join("config"))
        .await
        .ok()?;
    parse_lxc_config(&config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_podmans_container_store() {
        // From /var/lib/containers/storage/overlay-containers/containers.json
        // after `podman run -d --name obsrt-p2 localhost/obsrt/workload:latest`.
        let json = br#"[{"id":"d5667f5a21e975c27c6ab4dc5656b40a4fd8d50ab1d07bb24d35e9658eae6e21","names":["obsrt-p2"],"image":"6ab19b4d777f73ea34ac0af3fb58ea8bb6333ef5cce501a7bdc1410f07432248","layer":"2100d49360b327d501ed4b1a93183589badfa9ba1363ad94c976268fcc799e90","metadata":"{\"image-name\":\"localhost/obsrt/workload:latest\",\"image-id\":\"6ab19b4d777f73ea34ac0af3fb58ea8bb6333ef5cce501a7bdc1410f07432248\",\"name\":\"obsrt-p2\",\"created-at\":1795782821}","created":"2026-11-27T12:33:41.146615171Z","flags":{"MountLabel":"","ProcessLabel":""}}]"#;
        let id = "d5667f5a21e975c27c6ab4dc5656b40a4fd8d50ab1d07bb24d35e9658eae6e21";
        assert_eq!(
            parse_podman_store(json, id),
            Some((
                Some("obsrt-p2".to_owned()),
                Some("localhost/obsrt/workload:latest".to_owned())
            ))
        );
        assert_eq!(parse_podman_store(json, &"0".repeat(64)), None);
        assert_eq!(parse_podman_store(b"[]", id), None);
        assert_eq!(parse_podman_store(b"not json", id), None);
        // Metadata missing: the name from `names`, no image.
        let bare = format!(r#"[{{"id":"{id}","names":["x"]}}]"#);
        assert_eq!(
            parse_podman_store(bare.as_bytes(), id),
            Some((Some("x".to_owned()), None))
        );
    }

    #[test]
    fn reads_the_template_from_lxc_config() {
        // Head of /var/lib/lxc/<name>/config after `lxc-create -t busybox`.
        let busybox =
            "# Template used to create this container: /usr/share/lxc/templates/lxc-busybox\n\
                       # Parameters passed to the template:\n\
                       # For additional config options, please look at lxc.container.conf(5)\n\
                       lxc.net.0.type = empty\n\
                       lxc.rootfs.path = dir:/var/lib/lxc/obsrt-l1/rootfs\n";
        assert_eq!(parse_lxc_config(busybox).as_deref(), Some("busybox"));
        let download =
            "# Template used to create this container: /usr/share/lxc/templates/lxc-download\n\
                        # Parameters passed to the template: -d alpine -r 3.19 -a amd64\n";
        assert_eq!(parse_lxc_config(download).as_deref(), Some("alpine:3.19"));
        let long = "# Template used to create this container: /usr/share/lxc/templates/lxc-download\n\
                    # Parameters passed to the template: --dist debian --release bookworm --arch amd64\n";
        assert_eq!(parse_lxc_config(long).as_deref(), Some("debian:bookworm"));
        // Made by hand (no template line): nothing more than the name.
        assert_eq!(parse_lxc_config("lxc.uts.name = c1\n"), None);
    }
}
