// The room's page: the one kernel at the top, a card per container under it.
// Data from /api/state once, then live from /events (Server-Sent Events).
// Every value is put into the page with textContent: container and process
// names come from the containers, and are never markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
let kernel = null;
let state = null;
let live = { history: {}, recent: {} };

const $ = (id) => document.getElementById(id);
const fmt = (n) => Math.round(n).toLocaleString("en-US");

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function duration(ms) {
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

function uptime(s) {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  const hms = `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`;
  return d > 0 ? `${d} d ${hms}` : hms;
}

function renderKernel(k) {
  if (!k) return;
  $("release").textContent = k.release;
  $("version").textContent = k.version;
  $("boot-id").textContent = k.boot_id;
  $("uptime").textContent = uptime(k.uptime_s || 0);
  $("hostname").textContent = k.hostname;
}

function sparkline(points) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 600 100");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const base = document.createElementNS(SVG, "line");
  base.setAttribute("x1", "0");
  base.setAttribute("x2", "600");
  base.setAttribute("y1", "98");
  base.setAttribute("y2", "98");
  svg.appendChild(base);
  const max = Math.max(1, ...points);
  const n = Math.max(points.length, 2);
  const xy = points.map((v, i) => `${(i * 600) / (n - 1)},${98 - (v / max) * 94}`);
  if (xy.length === 1) xy.push(`600,${98 - (points[0] / max) * 94}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", xy.join(" "));
  svg.appendChild(line);
  svg.setAttribute("aria-label", `syscalls per second over the last minute, peak ${fmt(max)}`);
  return svg;
}

function card(c) {
  const ct = c.container || {};
  const name = ct.name || (ct.id || "").slice(0, 12) || "(unnamed)";
  const exited = c.state === "exited";
  const d = el("section", exited ? "card exited" : "card");
  d.dataset.name = name;
  d.dataset.state = c.state;
  d.dataset.total = c.syscalls_total;

  const head = el("div", "card-head");
  head.appendChild(el("h2", "name", name));
  head.appendChild(
    el("span", "badge", exited ? `exited · lived ${duration(c.lifetime_ms || 0)}` : "running"),
  );
  d.appendChild(head);
  const meta = [ct.image, ct.runtime].filter(Boolean).join(" · ");
  d.appendChild(el("div", "meta", meta || " "));

  const rate = el("div", "rate");
  rate.append(fmt(c.syscalls_per_s), el("small", null, " syscalls/s"));
  d.appendChild(rate);
  d.appendChild(sparkline(live.history[c.cgroup_id] || [c.syscalls_per_s]));
  d.appendChild(el("div", "total", `${fmt(c.syscalls_total)} syscalls into the host kernel`));

  if (c.top_syscalls.length) {
    const t = el("table", "top mono");
    for (const s of c.top_syscalls) {
      const tr = el("tr");
      tr.dataset.syscall = s.name;
      tr.appendChild(el("td", "syscall", s.name));
      tr.appendChild(el("td", "count", fmt(s.count)));
      t.appendChild(tr);
    }
    d.appendChild(t);
  }

  if (c.pids.host.length) {
    const r = el("div", "row pids");
    r.appendChild(el("span", "label", "PID inside → on the host"));
    const pairs = c.pids.host.map((h, i) => `${c.pids.inside[i] || "?"} → ${h}`);
    r.appendChild(el("span", "mono", pairs.join(" · ")));
    d.appendChild(r);
  }

  if (c.namespaces) {
    const r = el("div", "row ns");
    r.appendChild(el("span", "label", "own namespaces"));
    if (c.own_namespaces.length === 0) {
      r.appendChild(el("span", null, "none: the host's"));
    }
    for (const n of c.own_namespaces) r.appendChild(el("span", "chip mono", n));
    d.appendChild(r);
  }

  const cpus = Object.entries(c.cpu_ns_by_cpu || {});
  if (cpus.length) {
    d.appendChild(el("div", "label", "on-CPU time per CPU (one scheduler)"));
    const g = el("div", "cpu mono");
    const max = Math.max(...cpus.map(([, ns]) => ns));
    for (const [cpu, ns] of cpus) {
      g.appendChild(el("span", null, `cpu${cpu}`));
      const bar = el("div", "bar");
      bar.style.width = `${Math.max(1, (ns / max) * 100)}%`;
      g.appendChild(bar);
      g.appendChild(el("span", null, duration(ns / 1e6)));
    }
    d.appendChild(g);
  }

  const recent = live.recent[c.cgroup_id] || [];
  if (recent.length) {
    const t = el("div", "ticker mono");
    t.textContent = recent
      .slice()
      .reverse()
      .map((s) => `${s.comm}[${s.ns_pid}] ${s.syscall}`)
      .join("  ·  ");
    d.appendChild(t);
  }
  return d;
}

// The demo's VM, beside the containers: its own kernel, and what this
// kernel saw of it (only its VMM process).
function vmCard(v) {
  const d = el("section", "card vm");
  d.id = "vm";
  d.dataset.state = v.state;
  const head = el("div", "card-head");
  d.appendChild(head);
  if (v.state === "booting") {
    head.appendChild(el("h2", "name", "A VM beside them"));
    head.appendChild(el("span", "badge", "booting…"));
    d.appendChild(el("div", "meta", "QEMU with a kernel of its own; the same workload as its /init"));
    return d;
  }
  if (v.state === "failed") {
    head.appendChild(el("h2", "name", "A VM beside them"));
    head.appendChild(el("span", "badge", "did not run"));
    d.appendChild(el("div", "meta", v.error || ""));
    return d;
  }
  head.appendChild(el("h2", "name", `A VM: Linux ${v.release}, a kernel of its own`));
  head.appendChild(el("span", "badge", `booted in ${duration(v.boot_ms || 0)} (${v.accel})`));
  d.appendChild(el("div", "meta mono", `boot ID ${v.boot_id}`));
  const seen = el("div", "rate");
  seen.dataset.hostSaw = v.host_saw;
  seen.dataset.guestReported = v.guest_reported;
  seen.append(
    fmt(v.host_saw),
    el("small", null, ` of its ${fmt(v.guest_reported)} ${v.workload_syscall} calls reached this kernel`),
  );
  d.appendChild(seen);
  const rss = v.rss_bytes ? ` · ${fmt(v.rss_bytes / 1048576)} MiB resident` : "";
  d.appendChild(
    el(
      "div",
      "total",
      `This kernel saw one process of it: QEMU, PID ${v.vmm_pid}, ${fmt(v.vmm_syscalls || 0)} syscalls of its own${rss}`,
    ),
  );
  return d;
}

function render() {
  if (!state) return;
  renderKernel(state.kernel || kernel);
  const running = state.containers.filter((c) => c.state === "running").length;
  $("sentence").textContent =
    `${running} ${running === 1 ? "container" : "containers"}, 1 kernel`;
  const loss = state.loss || {};
  const lossBox = $("loss");
  if ((loss.lost_total || 0) > 0 || (loss.decode_errors || 0) > 0) {
    lossBox.hidden = false;
    lossBox.textContent =
      `Lost ${fmt(loss.lost_total)} events so far (${fmt(loss.lost)} in the last interval): ` +
      "the ring buffer was full. The counts above miss them.";
  } else {
    lossBox.hidden = true;
  }
  const main = $("containers");
  // Running ones first, then the exited ones, each in the order they came.
  const order = (c) => (c.state === "running" ? 0 : 1);
  const cards = state.containers.slice().sort((x, y) => order(x) - order(y));
  main.replaceChildren(...(state.vm ? [vmCard(state.vm)] : []), ...cards.map(card));
  $("empty").hidden = state.containers.length > 0;
}

function connect() {
  const es = new EventSource("/events");
  es.addEventListener("kernel", (e) => {
    kernel = JSON.parse(e.data);
    renderKernel(kernel);
  });
  es.addEventListener("state", (e) => {
    state = JSON.parse(e.data);
  });
  es.addEventListener("live", (e) => {
    live = JSON.parse(e.data);
    render();
    $("status").textContent = `live · updated ${new Date().toLocaleTimeString()}`;
  });
  es.addEventListener("container", (e) => {
    const r = JSON.parse(e.data);
    const name = (r.container && (r.container.name || r.container.id.slice(0, 12))) || "?";
    $("status").textContent = `${name} ${r.event === "exit" ? "exited" : "started"}`;
  });
  es.onerror = () => {
    $("status").textContent = "disconnected: retrying…";
  };
}

fetch("/api/state")
  .then((r) => r.json())
  .then((s) => {
    state = s;
    render();
  })
  .catch(() => {})
  .finally(connect);
