//! Pure parser: cgroup path -> container runtime and container.
//!
//! Input is a cgroup path relative to the hierarchy root, as printed in
//! `/proc/PID/cgroup` after `0::` / `N:controllers:` or as handed over by the
//! `cgroup_mkdir` tracepoint (e.g. `/system.slice/docker-<64hex>.scope`).
//! Nothing here touches the filesystem.
//!
//! # Decisions
//!
//! * **Nesting: the innermost container wins.** The path is walked from the
//!   root; every segment that names a container is pushed on a small stack and
//!   the top of the stack is the answer. So docker-in-docker
//!   (`/docker/<outer>/docker/<inner>`) gives `<inner>`, a kind/minikube node
//!   (`/docker/<node>/kubepods/…/pod<uid>/<cid>`) gives the Kubernetes
//!   container, and sub-cgroups a container creates for itself
//!   (`…/docker-<id>.scope/system.slice/foo.service`, `…/libpod-<id>.scope/container`,
//!   `/lxc.payload.c1/.lxc`, nspawn's `payload`) still belong to that container.
//! * **Kubernetes pairs pod and container.** A pod cgroup (`pod<uid>` under a
//!   `kubepods*` cgroupfs segment, or a systemd `*kubepods*-pod<uid_with_underscores>.slice`,
//!   including kind's `kubelet-kubepods-…` naming) opens a pod; the container
//!   segment below it (`<64hex>`, `crio-<id>`, `cri-containerd-<id>.scope`,
//!   `crio-<id>.scope`, `docker-<id>.scope`, or the `slice:prefix:id` form that
//!   containerd without `SystemdCgroup = true` creates) becomes
//!   `Runtime::Kubernetes` with `pod_uid` (dashes restored) and `engine` set
//!   from the prefix (`None` for a bare 64-hex id, which docker and containerd
//!   both produce under cgroupfs). Static pods have a 32-hex UID (config hash)
//!   and are accepted as-is.
//! * **Pod-level cgroups without a container segment** return
//!   `Some(ContainerRef { runtime: Kubernetes, id: "", pod_uid: Some(..), engine: None })`:
//!   processes there are charged to the pod, not the host. QoS-level cgroups
//!   (`/kubepods/burstable`, `kubepods-besteffort.slice`) are the host.
//! * **Runtime helpers are the host.** `crio-conmon-*`, `libpod-conmon-*`,
//!   `lxc.monitor*`, `lxc.pivot`, nspawn's/podman's `supervisor` sub-cgroup,
//!   podman `--cgroups=split`'s `runtime` sibling and docker's own cgroups
//!   (`docker.service`, `/docker/buildkit/…`) never match. A conmon scope
//!   placed *inside* a pod cgroup (CRI-O `conmon_cgroup = "pod"`) and a
//!   `supervisor` directly inside an nspawn machine / podman scope cancel that
//!   enclosing match, so they fall back to whatever encloses it (usually the
//!   host, or e.g. the kind node container when nested).
//! * **nspawn's template unit is its supervisor.** `systemd-nspawn@<name>.service`
//!   runs systemd-nspawn itself, which sets up the machine there and only
//!   then splits the unit into `payload` (the machine) and `supervisor`
//!   (itself); so the bare unit is the host and `payload` below it is the
//!   machine (seen live with systemd 252, `--keep-unit`). A `machine-<name>.scope`
//!   is made by machined for the machine's own leader, so the bare scope is
//!   the machine. On cgroup-v1-only hosts nspawn does not split the unit,
//!   and such a machine is reported as the host.
//! * **containerd namespaces** (`ctr`/`nerdctl` with the cgroupfs driver put
//!   containers at `/<namespace>/<id>`): a namespace directory is an arbitrary
//!   name and `ctr` ids are free-form, so this is ambiguous with any
//!   two-level cgroup. Only the unambiguous part is recognised:
//!   `default/<64hex>` and `k8s.io/<64hex>` (nerdctl always uses 64-hex ids).
//!   `/default/redis` or `/to/redis` are reported as the host.
//! * **IDs are validated**: 64 lowercase hex for docker, containerd, CRI-O and
//!   podman (so `/docker/not-an-id`, `docker-.scope` or an old 32-hex id are
//!   the host). nspawn machine names are systemd-unescaped (`\x2d` -> `-`).
//!   libvirt machines registered with machined are not nspawn: QEMU guests
//!   (`machine-qemu\x2d<n>\x2d<name>.scope`) are host processes (VM monitors)
//!   and libvirt-LXC guests (`machine-lxc\x2d<n>\x2d<name>.scope`) are
//!   reported as `Runtime::Lxc` with `<name>`.
//! * Rootless docker/podman/nerdctl containers live under
//!   `/user.slice/user-<uid>.slice/user@<uid>.service/…/docker-<id>.scope`
//!   (resp. `libpod-`, `nerdctl-`); the scope is recognised wherever it sits.
//!   The rootless daemon itself (`…/user@<uid>.service/app.slice/docker.service`)
//!   is the host.

use serde::Serialize;

/// Container runtime (or orchestrator) a cgroup belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Containerd,
    Crio,
    Podman,
    Kubernetes,
    Nspawn,
    Lxc,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
            Runtime::Podman => "podman",
            Runtime::Kubernetes => "kubernetes",
            Runtime::Nspawn => "nspawn",
            Runtime::Lxc => "lxc",
        }
    }
}

/// What a cgroup path resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRef {
    pub runtime: Runtime,
    /// Container ID (64 hex for docker/containerd/crio/podman; for kubernetes the container id when present), or the machine/container name for nspawn and LXC.
    pub id: String,
    /// Kubernetes pod UID (dashes restored, e.g. "0f1e…-…"), when the path is under kubepods.
    pub pod_uid: Option<String>,
    /// For kubernetes: the runtime underneath when recognisable (containerd/crio/docker), else None.
    pub engine: Option<Runtime>,
}

/// Parse one cgroup path. None = the host (anything not a container, including conmon/crio-conmon/libpod-conmon scopes, docker's own daemon cgroups, system.slice services, user sessions, the root "/").
pub fn parse_cgroup_path(path: &str) -> Option<ContainerRef> {
    // (segment index, match). The top is the innermost container.
    let mut stack: Vec<(usize, ContainerRef)> = Vec::new();
    let mut kubepods_seen = false;
    let mut prev: Option<&str> = None;
    // `systemd-nspawn@<name>.service` seen at this index: only its `payload`
    // is the machine (see the module docs).
    let mut nspawn_unit: Option<(usize, String)> = None;

    for (i, seg) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
        if seg.contains("kubepods") {
            kubepods_seen = true;
        }
        if let Some((unit, name)) = nspawn_unit.take() {
            if unit + 1 == i && seg == "payload" {
                stack.push((
                    i,
                    ContainerRef {
                        runtime: Runtime::Nspawn,
                        id: name,
                        pod_uid: None,
                        engine: None,
                    },
                ));
                prev = Some(seg);
                continue;
            }
        }

        // The match made by the immediately enclosing segment, if any.
        let parent = stack.last().filter(|(idx, _)| idx + 1 == i).map(|(_, r)| r);

        // Host-side helpers nested directly inside what they supervise.
        if let Some(p) = parent {
            let supervisor =
                seg == "supervisor" && matches!(p.runtime, Runtime::Nspawn | Runtime::Podman);
            let conmon_in_pod = is_conmon(seg) && is_pod_only(p);
            if supervisor || conmon_in_pod {
                stack.pop();
                prev = Some(seg);
                continue;
            }
        }

        match classify(seg, prev, kubepods_seen) {
            Seg::Pod(uid) => stack.push((i, pod_only(uid))),
            Seg::NspawnUnit(name) => nspawn_unit = Some((i, name)),
            Seg::Container {
                runtime,
                id,
                pod_uid,
            } => {
                // Pair with an open pod (no container matched since the pod).
                let open_pod = stack
                    .last()
                    .filter(|(_, r)| is_pod_only(r))
                    .and_then(|(_, r)| r.pod_uid.clone());
                let oci = matches!(
                    runtime,
                    Runtime::Docker | Runtime::Containerd | Runtime::Crio | Runtime::Podman
                );
                let pod = pod_uid.or(if oci { open_pod } else { None });
                let r = match pod {
                    Some(uid) if oci => ContainerRef {
                        runtime: Runtime::Kubernetes,
                        id,
                        pod_uid: Some(uid),
                        engine: Some(runtime),
                    },
                    _ => ContainerRef {
                        runtime,
                        id,
                        pod_uid: None,
                        engine: None,
                    },
                };
                stack.push((i, r));
            }
            Seg::BareHex(id) => {
                // cgroupfs driver: `…/pod<uid>/<64hex>` (docker or containerd).
                if let Some(uid) = parent
                    .filter(|p| is_pod_only(p))
                    .and_then(|p| p.pod_uid.clone())
                {
                    stack.push((
                        i,
                        ContainerRef {
                            runtime: Runtime::Kubernetes,
                            id,
                            pod_uid: Some(uid),
                            engine: None,
                        },
                    ));
                }
            }
            Seg::Other => {}
        }
        prev = Some(seg);
    }
    stack.pop().map(|(_, r)| r)
}

/// The containerd namespace a container of this path lives in, for a
/// lookup through containerd's API: the directory above a bare ID
/// (`/<namespace>/<id>`, containerd's cgroupfs layout), `k8s.io` (the CRI
/// plugin's) for `cri-containerd-` scopes and for Kubernetes containers not
/// known to be another engine's, `default` (nerdctl's) for `nerdctl-` scopes.
pub fn containerd_namespace(path: &str, r: &ContainerRef) -> Option<String> {
    const CRI: &str = "k8s.io";
    match (r.runtime, r.engine) {
        (Runtime::Kubernetes, None | Some(Runtime::Containerd)) if !r.id.is_empty() => {
            Some(CRI.to_owned())
        }
        (Runtime::Containerd, _) => {
            let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let i = segs.iter().rposition(|s| s.contains(r.id.as_str()))?;
            if segs[i] == r.id {
                return i.checked_sub(1).map(|j| segs[j].to_owned());
            }
            Some(
                if segs[i].contains("nerdctl") {
                    "default"
                } else {
                    CRI
                }
                .to_owned(),
            )
        }
        _ => None,
    }
}

/// Parse one line of /proc/PID/cgroup ("0::/path" or "4:memory:/docker/<id>") into (hierarchy_id, controllers, path).
///
/// A trailing newline and the ` (deleted)` marker the kernel appends for a
/// removed cgroup-v2 cgroup are stripped. The path must start with `/`
/// (paths outside the reader's cgroup namespace look like `/../..`, which is
/// accepted). The path may itself contain `:` (containerd's
/// `slice:cri-containerd:<id>` directories), so only the first two colons split.
pub fn parse_proc_cgroup_line(line: &str) -> Option<(u32, &str, &str)> {
    let line = line.trim_end_matches(['\n', '\r']);
    let mut parts = line.splitn(3, ':');
    let id = parts.next()?;
    let controllers = parts.next()?;
    let path = parts.next()?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u32 = id.parse().ok()?;
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    if !path.starts_with('/') {
        return None;
    }
    Some((id, controllers, path))
}

// ---------------------------------------------------------------------------

enum Seg {
    /// A Kubernetes pod cgroup; the UID with dashes restored.
    Pod(String),
    /// A container segment. `pod_uid` is set only by the
    /// `<pod slice>:<prefix>:<id>` form, which carries its own pod.
    Container {
        runtime: Runtime,
        id: String,
        pod_uid: Option<String>,
    },
    /// A bare 64-hex segment whose meaning depends on the parent (pod).
    BareHex(String),
    /// `systemd-nspawn@<name>.service`: the machine is its `payload` child.
    NspawnUnit(String),
    Other,
}

fn classify(seg: &str, prev: Option<&str>, kubepods_seen: bool) -> Seg {
    // `<parent slice>:<prefix>:<id>` — a runc systemd-style cgroupsPath that
    // was created literally by the cgroupfs driver (containerd without
    // `SystemdCgroup = true` under a systemd-driver kubelet).
    if seg.contains(':') {
        return classify_colon(seg);
    }

    if let Some(uid) = pod_segment(seg, kubepods_seen) {
        return Seg::Pod(uid);
    }

    // systemd scopes created by runc/crun for the various engines.
    if let Some(stem) = seg.strip_suffix(".scope") {
        const SCOPES: &[(&str, Runtime)] = &[
            ("docker-", Runtime::Docker),
            ("cri-containerd-", Runtime::Containerd),
            ("nerdctl-", Runtime::Containerd),
            ("crio-", Runtime::Crio),
            ("libpod-", Runtime::Podman),
        ];
        for (prefix, rt) in SCOPES {
            if let Some(id) = stem.strip_prefix(prefix) {
                if is_hex64(id) {
                    return container(*rt, id);
                }
            }
        }
        if let Some(esc) = stem.strip_prefix("machine-") {
            return classify_machine(&systemd_unescape(esc));
        }
        return Seg::Other;
    }

    // systemd-nspawn@<name>.service (machinectl start, --keep-unit).
    if let Some(esc) = seg
        .strip_prefix("systemd-nspawn@")
        .and_then(|s| s.strip_suffix(".service"))
    {
        let name = systemd_unescape(esc);
        return if valid_name(&name) {
            Seg::NspawnUnit(name)
        } else {
            Seg::Other
        };
    }

    // cgroupfs-driver names.
    const PLAIN: &[(&str, Runtime)] = &[
        ("crio-", Runtime::Crio),
        ("libpod-payload-", Runtime::Podman), // podman --cgroups=split
        ("libpod-", Runtime::Podman),
    ];
    for (prefix, rt) in PLAIN {
        if let Some(id) = seg.strip_prefix(prefix) {
            if is_hex64(id) {
                return container(*rt, id);
            }
        }
    }

    // LXC: `lxc.payload.<name>` (LXC >= 4), `lxc.payload/<name>` (3.1–3.x),
    // `lxc/<name>` (legacy, and Proxmox's `lxc/<vmid>/ns`).
    if let Some(name) = seg.strip_prefix("lxc.payload.") {
        return lxc(name);
    }
    if matches!(prev, Some("lxc.payload") | Some("lxc")) {
        return lxc(seg);
    }

    if is_hex64(seg) {
        return match prev {
            // docker cgroupfs driver (and GitHub Actions' --cgroup-parent).
            Some("docker") | Some("actions_job") => container(Runtime::Docker, seg),
            // containerd's default `/<namespace>/<id>`; see module docs.
            Some("default") | Some("k8s.io") => container(Runtime::Containerd, seg),
            _ => Seg::BareHex(seg.to_string()),
        };
    }
    Seg::Other
}

fn classify_colon(seg: &str) -> Seg {
    let mut it = seg.splitn(3, ':');
    let (Some(parent), Some(prefix), Some(id)) = (it.next(), it.next(), it.next()) else {
        return Seg::Other;
    };
    let rt = match prefix {
        "cri-containerd" | "nerdctl" => Runtime::Containerd,
        "crio" => Runtime::Crio,
        "docker" => Runtime::Docker,
        "libpod" => Runtime::Podman,
        _ => return Seg::Other,
    };
    if !is_hex64(id) {
        return Seg::Other;
    }
    Seg::Container {
        runtime: rt,
        id: id.to_string(),
        pod_uid: pod_segment(parent, false),
    }
}

/// nspawn machine scope (`machine-<name>.scope`, name already unescaped).
fn classify_machine(name: &str) -> Seg {
    // libvirt names its machines `<driver>-<domain id>-<domain name>`.
    if let Some(rest) = name.strip_prefix("qemu-") {
        if strip_number_dash(rest).is_some() {
            return Seg::Other; // a VM's QEMU process: host
        }
    }
    if let Some(rest) = name.strip_prefix("lxc-") {
        if let Some(guest) = strip_number_dash(rest) {
            return lxc(guest);
        }
    }
    if valid_name(name) {
        Seg::Container {
            runtime: Runtime::Nspawn,
            id: name.to_string(),
            pod_uid: None,
        }
    } else {
        Seg::Other
    }
}

/// `"12-foo"` -> `Some("foo")`.
fn strip_number_dash(s: &str) -> Option<&str> {
    let (num, rest) = s.split_once('-')?;
    (!num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty()).then_some(rest)
}

fn lxc(name: &str) -> Seg {
    if valid_name(name) {
        Seg::Container {
            runtime: Runtime::Lxc,
            id: name.to_string(),
            pod_uid: None,
        }
    } else {
        Seg::Other
    }
}

fn container(runtime: Runtime, id: &str) -> Seg {
    Seg::Container {
        runtime,
        id: id.to_string(),
        pod_uid: None,
    }
}

/// Pod cgroup -> pod UID with dashes.
///
/// systemd driver: `kubepods-pod<uid>.slice`, `kubepods-<qos>-pod<uid>.slice`,
/// `kubelet-kubepods-<qos>-pod<uid>.slice` (UID dashes are `_`).
/// cgroupfs driver: `pod<uid>` somewhere below a `kubepods*` segment.
fn pod_segment(seg: &str, kubepods_seen: bool) -> Option<String> {
    let raw = if let Some(stem) = seg.strip_suffix(".slice") {
        if !seg.contains("kubepods") {
            return None;
        }
        let (_, last) = stem.rsplit_once('-')?;
        last.strip_prefix("pod")?
    } else if kubepods_seen {
        seg.strip_prefix("pod")?
    } else {
        return None;
    };
    let uid = raw.replace('_', "-");
    valid_pod_uid(&uid).then_some(uid)
}

/// RFC 4122 textual UUID, or the 32-hex config hash static pods get.
fn valid_pod_uid(uid: &str) -> bool {
    let b = uid.as_bytes();
    if b.len() == 32 {
        return b.iter().all(u8::is_ascii_hexdigit);
    }
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn pod_only(uid: String) -> ContainerRef {
    ContainerRef {
        runtime: Runtime::Kubernetes,
        id: String::new(),
        pod_uid: Some(uid),
        engine: None,
    }
}

fn is_pod_only(r: &ContainerRef) -> bool {
    r.runtime == Runtime::Kubernetes && r.id.is_empty()
}

fn is_conmon(seg: &str) -> bool {
    seg.starts_with("crio-conmon-") || seg.starts_with("libpod-conmon-")
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// Undo systemd unit-name escaping (`\xHH` -> byte). Malformed escapes are
/// kept literally; invalid UTF-8 is replaced.
fn systemd_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let (Some(h), Some(l)) = (hex_val(b[i + 2]), hex_val(b[i + 3])) {
                out.push(h << 4 | l);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real IDs / UIDs taken from public bug reports and test suites
    // (neuvector, falco/libsinsp, netdata, runc, cri-o, containerd, podman,
    // minikube, k3k, systemd, lxc issue threads).
    const D1: &str = "7951fb549ab99e0722a949b6c121634e1f3a36b5bacbe5392991e3b12251e6b8";
    const D2: &str = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d";
    const D_OUT: &str = "a9a5ad238e59234193ee7ec3fcff5e735b3708ea1068826952255b69e3cfa413";
    const D_IN: &str = "ec08435e04266c5ba381fccbb829f626d11d8ddf5f8f547263c7a2d79ab4787a";
    const D_SYSD: &str = "d3d81786f3e154c7c9d379bcc3d4bdb1c55a5ee824195be91b8a40e55fdebe3a";
    const MINIKUBE: &str = "d6701ec289c56e4391acb11d07474b3139466857a305490575508a8b7a9fcf22";

    #[derive(Clone, Copy)]
    enum E {
        Host,
        /// runtime, id
        C(Runtime, &'static str),
        /// k8s: container id ("" = pod-level), pod uid, engine
        K(&'static str, &'static str, Option<Runtime>),
    }
    use Runtime::*;
    use E::*;

    fn table() -> Vec<(String, E)> {
        let s = |p: &str, e: E| (p.to_string(), e);
        vec![
            // --- Docker ---------------------------------------------------
            s(&format!("/docker/{D1}"), C(Docker, D1)),
            s(&format!("/system.slice/docker-{D2}.scope"), C(Docker, D2)),
            s(&format!("/docker.slice/docker-{D1}.scope"), C(Docker, D1)),
            // rootless docker (docker/docs#14545 layout)
            s(
                &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{D2}.scope"),
                C(Docker, D2),
            ),
            // docker-in-docker (RancherOS): innermost wins
            s(&format!("/docker/{D_OUT}/docker/{D_IN}"), C(Docker, D_IN)),
            // systemd running inside a docker container
            s(
                &format!("/docker/{D_SYSD}/system.slice/opendkim.service"),
                C(Docker, D_SYSD),
            ),
            s(&format!("/docker/{D1}/init.scope"), C(Docker, D1)),
            s(&format!("/actions_job/{D1}"), C(Docker, D1)),
            s("/system.slice/docker.service", Host),
            s("/system.slice/docker.socket", Host),
            s(
                "/user.slice/user-1000.slice/user@1000.service/app.slice/docker.service",
                Host,
            ),
            s("/docker/buildkit/mdgx6k0ivbdbpjq4tppcmxdrn", Host),
            s("/docker/buildkit", Host),
            s("/docker/not-an-id", Host),
            s("/docker/", Host),
            s("/docker", Host),
            // moby#34220: a 32-hex id is not a docker id
            s("/docker/c8cef9e2ff114e429cb845559c4a0dff", Host),
            s(&format!("/docker/{}", D1.to_uppercase()), Host),
            s(&format!("/docker/{}", &D1[..63]), Host),
            s("/system.slice/docker-.scope", Host),
            // --- Kubernetes, cgroupfs driver -------------------------------
            s(
                "/kubepods/besteffort/pod74ba62da-1a3d-11e7-bb11-080027cb0e22/cb1eadb7abe3a6545e9856411207073277838e1bdc003337c2f8685faeedc32c",
                K("cb1eadb7abe3a6545e9856411207073277838e1bdc003337c2f8685faeedc32c", "74ba62da-1a3d-11e7-bb11-080027cb0e22", None),
            ),
            // k3s (rancher/k3k#792)
            s(
                "/kubepods/burstable/pod404bd273-57bc-4508-a386-e2b76d3c9cfe/3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b",
                K("3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b", "404bd273-57bc-4508-a386-e2b76d3c9cfe", None),
            ),
            // guaranteed QoS has no QoS level
            s(
                "/kubepods/pod91f5b561-369f-4103-8015-66391059996a/24c53b774a586f06abc058619b47f71d9d869ac50c92898adbd199106fd0aaeb",
                K("24c53b774a586f06abc058619b47f71d9d869ac50c92898adbd199106fd0aaeb", "91f5b561-369f-4103-8015-66391059996a", None),
            ),
            // CRI-O, cgroupfs (falco test)
            s(
                "/kubepods/besteffort/pod63b3ebfc-2890-11e9-8154-16bf8ef8d9dc/crio-73bfe475650de66df8e2affdc98d440dcbe84f8df83b6f75a68a82eb7026136a",
                K("73bfe475650de66df8e2affdc98d440dcbe84f8df83b6f75a68a82eb7026136a", "63b3ebfc-2890-11e9-8154-16bf8ef8d9dc", Some(Crio)),
            ),
            s(
                "/kubepods/besteffort/pod63b3ebfc-2890-11e9-8154-16bf8ef8d9dc/crio-conmon-73bfe475650de66df8e2affdc98d440dcbe84f8df83b6f75a68a82eb7026136a",
                Host,
            ),
            // sub-cgroup inside the container (neuvector kube-proxy case)
            s(
                "/kubepods/besteffort/podf8a694f2-7c08-11e9-98da-000c29077430/c04e0a88a1de067f25bece337d4dbb897396e0b623c2a65330850fc9823f1903/kube-proxy",
                K("c04e0a88a1de067f25bece337d4dbb897396e0b623c2a65330850fc9823f1903", "f8a694f2-7c08-11e9-98da-000c29077430", None),
            ),
            // pod-level only
            s(
                "/kubepods/burstable/pod404bd273-57bc-4508-a386-e2b76d3c9cfe",
                K("", "404bd273-57bc-4508-a386-e2b76d3c9cfe", None),
            ),
            s("/kubepods/burstable", Host),
            s("/kubepods", Host),
            s(
                "/kubepods/besteffort/podnotauid/cb1eadb7abe3a6545e9856411207073277838e1bdc003337c2f8685faeedc32c",
                Host,
            ),
            // a pod-looking dir outside kubepods is not a pod
            s(
                "/pod404bd273-57bc-4508-a386-e2b76d3c9cfe/3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b",
                Host,
            ),
            // --- Kubernetes, systemd driver --------------------------------
            s(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod55c6c714_b240_4dec_9a45_57b61696ab6e.slice/cri-containerd-2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36.scope",
                K("2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36", "55c6c714-b240-4dec-9a45-57b61696ab6e", Some(Containerd)),
            ),
            // static pod: UID is a 32-hex hash
            s(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8daa50c3a64c9ff60bb9eab7b44b56fd.slice/cri-containerd-2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5.scope",
                K("2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5", "8daa50c3a64c9ff60bb9eab7b44b56fd", Some(Containerd)),
            ),
            // guaranteed pod slice
            s(
                "/kubepods.slice/kubepods-pod91f5b561_369f_4103_8015_66391059996a.slice/cri-containerd-47e2aec92638af3b0bc1cf8c13c3ba2e189885df47a5ba2a2103165748314c1c.scope",
                K("47e2aec92638af3b0bc1cf8c13c3ba2e189885df47a5ba2a2103165748314c1c", "91f5b561-369f-4103-8015-66391059996a", Some(Containerd)),
            ),
            // CRI-O (runc#4620)
            s(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope",
                K("5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c", "a5c1f8d5-1919-434d-add7-4afaafdaef89", Some(Crio)),
            ),
            // CRI-O conmon inside the pod slice (runc#4620) and in system.slice (microshift#697)
            s(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod207aaad1_659f_4db8_88e0_46e0cdcc3004.slice/crio-conmon-32da98c8522068be05a7510a3eddb09cad6ed2f03286180d0e931d0d0b6224a6.scope",
                Host,
            ),
            s(
                "/system.slice/crio-conmon-e0c85fe7644a858988d9687c2e0736a7d31922740d0f3e001c6b2e0aa7e5f528.scope",
                Host,
            ),
            // dockershim / cri-dockerd (neuvector)
            s(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod045b1e35_7f13_11e7_ac42_0050568ffca0.slice/docker-b5b6f2da8008be266864f896f93789762b2ce50792114a5c5f2cc3315af0bc70.scope",
                K("b5b6f2da8008be266864f896f93789762b2ce50792114a5c5f2cc3315af0bc70", "045b1e35-7f13-11e7-ac42-0050568ffca0", Some(Docker)),
            ),
            // kind's kubelet.slice naming (containerd/nri#227)
            s(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod1e597579_417e_482f_bf65_5fe170c3aebd.slice/cri-containerd-a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e.scope",
                K("a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e", "1e597579-417e-482f-bf65-5fe170c3aebd", Some(Containerd)),
            ),
            // minikube node in docker (minikube#11280): kubepods found anywhere, innermost wins
            s(
                &format!("/docker/{MINIKUBE}/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/crio-0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0.scope"),
                K("0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0", "2ca4a155-3599-498d-bb9d-4446693fa3ea", Some(Crio)),
            ),
            // conmon in a pod inside a node container falls back to the node
            s(
                &format!("/docker/{MINIKUBE}/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/crio-conmon-0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0.scope"),
                C(Docker, MINIKUBE),
            ),
            s(&format!("/docker/{MINIKUBE}/kubepods.slice"), C(Docker, MINIKUBE)),
            // containerd without SystemdCgroup=true (containerd#5226, runwasi#821)
            s(
                "/system.slice/containerd.service/kubepods-burstable-pod7a875b5c_4d3c_4345_ac0f_5c847d8d7129.slice:cri-containerd:ee05f876e981d258209f91f25f139f7abc13a0246a5f343298572602fea8c7bb",
                K("ee05f876e981d258209f91f25f139f7abc13a0246a5f343298572602fea8c7bb", "7a875b5c-4d3c-4345-ac0f-5c847d8d7129", Some(Containerd)),
            ),
            s(
                "/kubepods-besteffort-podb7c2cbdb_9ab5_47ef_977e_97e39a73da6d.slice:cri-containerd:66dda1e97c4fc48204b066f07fc1e28bab94a571820484e01576982d4cb9d32b",
                K("66dda1e97c4fc48204b066f07fc1e28bab94a571820484e01576982d4cb9d32b", "b7c2cbdb-9ab5-47ef-977e-97e39a73da6d", Some(Containerd)),
            ),
            s(
                "/system.slice/containerd.service/kubepods-burstable-pod7a875b5c_4d3c_4345_ac0f_5c847d8d7129.slice:cri-containerd:webapp",
                Host,
            ),
            s(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod55c6c714_b240_4dec_9a45_57b61696ab6e.slice",
                K("", "55c6c714-b240-4dec-9a45-57b61696ab6e", None),
            ),
            s("/kubepods.slice/kubepods-besteffort.slice", Host),
            s("/kubepods.slice", Host),
            // --- containerd (no Kubernetes) --------------------------------
            s(
                "/system.slice/system-getty.slice/cri-containerd-0e768f8db752fcd648adb264498daa1d8f31562320e881d6a9ec593d24b1f779.scope",
                C(Containerd, "0e768f8db752fcd648adb264498daa1d8f31562320e881d6a9ec593d24b1f779"),
            ),
            s(
                &format!("system.slice:cri-containerd:{D1}"),
                C(Containerd, D1),
            ),
            s(&format!("/system.slice/nerdctl-{D2}.scope"), C(Containerd, D2)),
            s(&format!("/default/{D2}"), C(Containerd, D2)),
            s(&format!("/k8s.io/{D2}"), C(Containerd, D2)),
            // containerd#1617: ctr ids are free-form -> ambiguous -> host
            s("/to/redis", Host),
            s("/default/redis", Host),
            s("/system.slice/containerd.service", Host),
            s(&format!("/{D1}"), Host),
            // --- Podman ----------------------------------------------------
            s(&format!("/machine.slice/libpod-{D1}.scope"), C(Podman, D1)),
            s(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-ccd5dc6d1c49a1edd5c55eff9d11b626bd4f38d8f96ad1d2c394d65914deef45.scope/container",
                C(Podman, "ccd5dc6d1c49a1edd5c55eff9d11b626bd4f38d8f96ad1d2c394d65914deef45"),
            ),
            // pod infra container in a podman pod slice (podman#13673)
            s(
                "/machine.slice/machine-libpod_pod_ddf44d54b520f0b4469fcd01c3155ca49e6911dc2175471eb3a7b789187a7a89.slice/libpod-1dadda571b14eefb3158a15d0fff7e0089f9dd92f922679ed0116cccdfe8bb0f.scope/container",
                C(Podman, "1dadda571b14eefb3158a15d0fff7e0089f9dd92f922679ed0116cccdfe8bb0f"),
            ),
            s(
                "/machine.slice/machine-libpod_pod_ddf44d54b520f0b4469fcd01c3155ca49e6911dc2175471eb3a7b789187a7a89.slice",
                Host,
            ),
            // --cgroups=split
            s(
                "/srv.slice/container-homeassistant.service/libpod-payload-c4e8e0d642078c90dde4a8a65883a7c0bee26f751d7c6a3096dc322519c658d3",
                C(Podman, "c4e8e0d642078c90dde4a8a65883a7c0bee26f751d7c6a3096dc322519c658d3"),
            ),
            s("/srv.slice/container-homeassistant.service/runtime", Host),
            // cgroupfs (podman#7004)
            s(
                "/libpod_parent/libpod-c3be953da46e015e93a9de37c547a7587a32d609fad3ca721135937833d94a1e",
                C(Podman, "c3be953da46e015e93a9de37c547a7587a32d609fad3ca721135937833d94a1e"),
            ),
            s("/libpod_parent/conmon", Host),
            s(&format!("/machine.slice/libpod-conmon-{D1}.scope"), Host),
            s(
                &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-{D1}.scope"),
                Host,
            ),
            // cgroup v1 split layout (podman#9302)
            s(
                "/machine.slice/libpod-bf1e2a75367731b3cf893e42daf86675d1f7b99d22ab1b487795705a328ca07c.scope/supervisor",
                Host,
            ),
            s(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/podman-6696.scope",
                Host,
            ),
            // --- systemd-nspawn --------------------------------------------
            s(
                r"/machine.slice/machine-TEST\x2d13\x2dNSPAWN.machinectl\x2dbind.7ye.scope",
                C(Nspawn, "TEST-13-NSPAWN.machinectl-bind.7ye"),
            ),
            s(
                "/machine.slice/machine-fedora.scope/payload/system.slice/sshd.service",
                C(Nspawn, "fedora"),
            ),
            s("/machine.slice/machine-fedora.scope/payload", C(Nspawn, "fedora")),
            s("/machine.slice/machine-fedora.scope/supervisor", Host),
            s(
                r"/machine.slice/systemd-nspawn@my\x2dbox.service/payload",
                C(Nspawn, "my-box"),
            ),
            s("/machine.slice/systemd-nspawn@debian.service/supervisor", Host),
            s("/machine.slice/systemd-nspawn@debian.service", Host),
            s(
                "/machine.slice/systemd-nspawn@debian.service/payload/system.slice/cron.service",
                C(Nspawn, "debian"),
            ),
            s("/machine.slice/systemd-nspawn@debian.service/other/payload", Host),
            s(
                &format!("/machine.slice/machine-fedora.scope/payload/system.slice/docker-{D1}.scope"),
                C(Docker, D1),
            ),
            // libvirt: QEMU guest = host, libvirt-lxc guest = LXC
            s(r"/machine.slice/machine-qemu\x2d1\x2dubuntu.scope/libvirt/emulator", Host),
            s(r"/machine.slice/machine-lxc\x2d1268\x2dsl.scope", C(Lxc, "sl")),
            s("/machine.slice", Host),
            s("/machine.slice/machine-.scope", Host),
            // --- LXC / LXD / Proxmox ---------------------------------------
            s("/lxc.payload.c1", C(Lxc, "c1")),
            s("/lxc.payload.c1/system.slice/cron.service", C(Lxc, "c1")),
            s("/lxc.payload.c1/.lxc", C(Lxc, "c1")),
            s("/lxc.payload/container1", C(Lxc, "container1")),
            s("/lxc/101/ns/init.scope", C(Lxc, "101")),
            s("/lxc/yyztestttt333321", C(Lxc, "yyztestttt333321")),
            s(
                &format!("/lxc.payload.c1/system.slice/docker-{D2}.scope"),
                C(Docker, D2),
            ),
            s("/lxc.monitor.c1", Host),
            s("/lxc.monitor.node-ct", Host),
            s("/lxc.monitor/c1", Host),
            s("/lxc.pivot", Host),
            s("/lxc.payload.", Host),
            s("/lxc.payload", Host),
            // --- host ------------------------------------------------------
            s("/", Host),
            s("", Host),
            s("/init.scope", Host),
            s("/user.slice/user-1000.slice/session-2.scope", Host),
            s("/user.slice/user-1000.slice/user@1000.service/init.scope", Host),
            s("/system.slice/sshd.service", Host),
            s("/system.slice/systemd-journald.service", Host),
            s("/user/1000.user/c2.session", Host),
        ]
    }

    fn expect(e: E) -> Option<ContainerRef> {
        match e {
            Host => None,
            C(rt, id) => Some(ContainerRef {
                runtime: rt,
                id: id.to_string(),
                pod_uid: None,
                engine: None,
            }),
            K(id, pod, engine) => Some(ContainerRef {
                runtime: Kubernetes,
                id: id.to_string(),
                pod_uid: Some(pod.to_string()),
                engine,
            }),
        }
    }

    #[test]
    fn cgroup_path_table() {
        let t = table();
        assert!(t.len() >= 35, "table has {} rows", t.len());
        let mut failures = Vec::new();
        for (path, e) in t {
            let got = parse_cgroup_path(&path);
            let want = expect(e);
            if got != want {
                failures.push(format!("{path}\n   got  {got:?}\n   want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn runtime_names() {
        for (rt, s) in [
            (Docker, "docker"),
            (Containerd, "containerd"),
            (Crio, "crio"),
            (Podman, "podman"),
            (Kubernetes, "kubernetes"),
            (Nspawn, "nspawn"),
            (Lxc, "lxc"),
        ] {
            assert_eq!(rt.as_str(), s);
        }
    }

    /// Resolve a whole /proc/PID/cgroup file the way a caller would: prefer the
    /// v2 line, else the first v1 line that resolves to a container.
    fn resolve_file(content: &str) -> Option<ContainerRef> {
        let lines: Vec<_> = content.lines().filter_map(parse_proc_cgroup_line).collect();
        if let Some((_, _, p)) = lines.iter().find(|(id, c, _)| *id == 0 && c.is_empty()) {
            if let Some(r) = parse_cgroup_path(p) {
                return Some(r);
            }
        }
        lines.iter().find_map(|(_, _, p)| parse_cgroup_path(p))
    }

    #[test]
    fn proc_cgroup_v2_host() {
        let pid1 = "0::/init.scope\n";
        assert_eq!(parse_proc_cgroup_line(pid1), Some((0, "", "/init.scope")));
        assert_eq!(resolve_file(pid1), None);

        let shell = "0::/user.slice/user-1000.slice/session-2.scope";
        assert_eq!(
            parse_proc_cgroup_line(shell),
            Some((0, "", "/user.slice/user-1000.slice/session-2.scope"))
        );
        assert_eq!(resolve_file(shell), None);

        let ctr = format!("0::/system.slice/docker-{D2}.scope\n");
        let (id, c, p) = parse_proc_cgroup_line(&ctr).unwrap();
        assert_eq!((id, c), (0, ""));
        assert_eq!(parse_cgroup_path(p).unwrap().id, D2);

        let deleted = format!("0::/system.slice/docker-{D2}.scope (deleted)\n");
        assert_eq!(
            parse_proc_cgroup_line(&deleted).unwrap().2,
            format!("/system.slice/docker-{D2}.scope")
        );

        // outside the reader's cgroup namespace
        assert_eq!(
            parse_proc_cgroup_line("0::/../../system.slice/sshd.service"),
            Some((0, "", "/../../system.slice/sshd.service"))
        );

        // a path containing ':' stays whole
        let colon = "0::/kubepods-besteffort-podb7c2cbdb_9ab5_47ef_977e_97e39a73da6d.slice:cri-containerd:66dda1e97c4fc48204b066f07fc1e28bab94a571820484e01576982d4cb9d32b";
        let (_, _, p) = parse_proc_cgroup_line(colon).unwrap();
        assert!(p.ends_with(":66dda1e97c4fc48204b066f07fc1e28bab94a571820484e01576982d4cb9d32b"));
        assert_eq!(parse_cgroup_path(p).unwrap().engine, Some(Containerd));
    }

    #[test]
    fn proc_cgroup_hybrid_host() {
        // Debian 11 hybrid, docker container (docker/for-linux#1293): the v2
        // line still points at containerd.service, the v1 lines at the container.
        let f = "\
12:rdma:/
11:perf_event:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81
10:freezer:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81
9:memory:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81
8:cpuset:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81
7:devices:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81
6:net_cls,net_prio:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81
5:hugetlb:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81
4:pids:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81
3:cpu,cpuacct:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81
2:blkio:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81
1:name=systemd:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81
0::/system.slice/containerd.service
";
        let lines: Vec<_> = f
            .lines()
            .map(|l| parse_proc_cgroup_line(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 13);
        assert_eq!(lines[0], (12, "rdma", "/"));
        assert_eq!(
            lines[5],
            (
                7,
                "devices",
                "/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81"
            )
        );
        assert_eq!(lines[6].1, "net_cls,net_prio");
        assert_eq!(lines[11].1, "name=systemd");
        assert_eq!(lines[12], (0, "", "/system.slice/containerd.service"));
        let r = resolve_file(f).unwrap();
        assert_eq!(r.runtime, Docker);
        assert_eq!(
            r.id,
            "a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81"
        );

        // hybrid host, user session (elastic/quark#350)
        let f = "\
12:cpuset:/
11:hugetlb:/
10:blkio:/
9:misc:/
8:perf_event:/
7:rdma:/
6:net_cls,net_prio:/
5:pids:/user.slice/user-1000.slice/session-1.scope
4:freezer:/
3:memory:/user.slice/user-1000.slice/session-1.scope
2:cpu,cpuacct:/
1:name=systemd:/user.slice/user-1000.slice/session-1.scope
0::/user.slice/user-1000.slice/session-1.scope
";
        assert!(f.lines().all(|l| parse_proc_cgroup_line(l).is_some()));
        assert_eq!(resolve_file(f), None);

        // modern hybrid docker: every hierarchy agrees
        let f = format!("12:pids:/docker/{D1}\n1:name=systemd:/docker/{D1}\n0::/docker/{D1}\n");
        for l in f.lines() {
            let (_, _, p) = parse_proc_cgroup_line(l).unwrap();
            assert_eq!(parse_cgroup_path(p).unwrap().id, D1);
        }
    }

    #[test]
    fn proc_cgroup_v1_host() {
        // CentOS 7 / CRI-O, cgroup v1 only (opencontainers/runc#4620)
        let f = "\
13:freezer:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
12:cpuset:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
11:files:/
10:hugetlb:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
";
        let lines: Vec<_> = f
            .lines()
            .map(|l| parse_proc_cgroup_line(l).unwrap())
            .collect();
        assert_eq!(lines[2], (11, "files", "/"));
        assert!(lines.iter().all(|(id, _, _)| *id != 0));
        let r = resolve_file(f).unwrap();
        assert_eq!(r.runtime, Kubernetes);
        assert_eq!(r.engine, Some(Crio));
        assert_eq!(
            r.pod_uid.as_deref(),
            Some("a5c1f8d5-1919-434d-add7-4afaafdaef89")
        );

        // host pid 1 on a v1-only system
        let f = "\
12:name=systemd:/
11:hugetlb:/
10:net_prio:/
9:perf_event:/
8:blkio:/
7:net_cls:/
6:freezer:/
5:devices:/
4:memory:/
3:cpuacct:/
2:cpu:/
1:cpuset:/
";
        assert_eq!(f.lines().filter_map(parse_proc_cgroup_line).count(), 12);
        assert_eq!(resolve_file(f), None);

        // CentOS docker, systemd driver
        let line = format!("2:cpuacct,cpu:/system.slice/docker-{D2}.scope");
        assert_eq!(
            parse_proc_cgroup_line(&line),
            Some((2, "cpuacct,cpu", &line[14..]))
        );
    }

    #[test]
    fn proc_cgroup_line_rejects_garbage() {
        for l in [
            "",
            ":",
            "::",
            "::::",
            "0:",
            "0:/x",
            "x::/",
            "-1::/",
            "0::",
            "0::relative",
            "99999999999::/",
            " 0::/",
            "0 ::/",
            "\n",
        ] {
            assert_eq!(parse_proc_cgroup_line(l), None, "{l:?}");
        }
        assert_eq!(parse_proc_cgroup_line("0::/\r\n"), Some((0, "", "/")));
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let long = "a/".repeat(100_000);
        let long_hex = "f".repeat(1_000_000);
        let many_colons = ":".repeat(10_000);
        let odd: Vec<String> = vec![
            String::new(),
            "::::".into(),
            "/".into(),
            "//////".into(),
            "/docker/".into(),
            "docker-.scope".into(),
            "/docker-.scope".into(),
            ".scope".into(),
            "crio-".into(),
            "crio-conmon-".into(),
            "libpod-conmon-.scope".into(),
            "machine-.scope".into(),
            r"machine-\x.scope".into(),
            r"machine-\x2.scope".into(),
            r"machine-\.scope".into(),
            r"machine-\xff\xfe.scope".into(),
            r"machine-\x00.scope".into(),
            "systemd-nspawn@.service".into(),
            "lxc.payload.".into(),
            "/lxc/".into(),
            "/lxc/..".into(),
            "kubepods-pod.slice".into(),
            "/kubepods/pod".into(),
            "/kubepods/pod/".into(),
            "kubepods-burstable-pod_.slice".into(),
            ":cri-containerd:".into(),
            "a:b:c:d".into(),
            "/kubepods.slice:cri-containerd:".into(),
            "/☃/🐳/docker-ü.scope".into(),
            "pod☃☃☃☃☃☃☃☃☃☃☃☃".into(),
            format!("/docker/{long_hex}"),
            long.clone(),
            many_colons.clone(),
            format!("0::{long}"),
        ];
        for s in &odd {
            let _ = parse_cgroup_path(s);
            let _ = parse_proc_cgroup_line(s);
        }
        assert_eq!(parse_cgroup_path(&format!("/docker/{long_hex}")), None);
        assert_eq!(
            parse_cgroup_path(r"/machine.slice/machine-\xff.scope")
                .unwrap()
                .id,
            "\u{fffd}"
        );

        // Pseudo-random recombination of meaningful fragments.
        let frags = [
            "/",
            "docker",
            "docker-",
            ".scope",
            ".slice",
            "kubepods",
            "-pod",
            "pod",
            "_",
            "-",
            ":",
            "crio-",
            "conmon-",
            "libpod-",
            "machine-",
            r"\x2d",
            "lxc.payload.",
            "lxc",
            "supervisor",
            "payload",
            D1,
            "0f1e2d3c",
            "ü",
            "\\",
            "x",
            "default",
            "..",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut s = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let n = (state % 12) as usize;
            for _ in 0..n {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push_str(frags[(state % frags.len() as u64) as usize]);
            }
            let _ = parse_cgroup_path(&s);
            let _ = parse_proc_cgroup_line(&s);
        }
    }

    #[test]
    fn containerd_namespaces_for_lookups() {
        let ns = |p: &str| containerd_namespace(p, &parse_cgroup_path(p).expect(p));
        // Layouts seen with containerd 1.6's ctr on a cgroupfs host.
        assert_eq!(ns(&format!("/default/{D2}")).as_deref(), Some("default"));
        assert_eq!(ns(&format!("/k8s.io/{D1}")).as_deref(), Some("k8s.io"));
        assert_eq!(
            ns(&format!(
                "/kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/{D1}"
            ))
            .as_deref(),
            Some("k8s.io")
        );
        assert_eq!(
            ns(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod74ba62da_1a3d_11e7_bb11_080027cb0e22.slice/cri-containerd-{D2}.scope"
            ))
            .as_deref(),
            Some("k8s.io")
        );
        assert_eq!(
            ns(&format!("/system.slice/cri-containerd-{D2}.scope")).as_deref(),
            Some("k8s.io")
        );
        assert_eq!(
            ns(&format!("/system.slice/nerdctl-{D2}.scope")).as_deref(),
            Some("default")
        );
        // Other engines' containers are not containerd's to name.
        assert_eq!(ns(&format!("/docker/{D1}")), None);
        assert_eq!(
            ns(&format!(
                "/kubepods/besteffort/pod63b3ebfc-2890-11e9-8154-16bf8ef8d9dc/crio-{D1}"
            )),
            None
        );
        assert_eq!(ns("/lxc.payload.c1"), None);
        // A pod without a container segment has no container to look up.
        assert_eq!(
            ns("/kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
            None
        );
    }
}
