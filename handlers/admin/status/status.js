// shoal status page: polls /api/cluster and updates the member table in
// place. Everything is written with textContent, never innerHTML, because
// member names and URLs come from other nodes.
"use strict";

(function () {
  const POLL_MS = 1000;
  const MAX_BACKOFF_MS = 5000;
  const columns = [
    ["name", "Name"], ["state", "State"], ["load", "Load"], ["inflight", "In flight"],
    ["rps", "Req/s"], ["eps", "5xx/s"], ["cgi", "CGI"], ["uptime", "Uptime"],
    ["version", "Version"], ["config", "Config"], ["address", "Address"],
  ];
  const numeric = new Set(["inflight", "rps", "eps", "cgi"]);
  const $ = (id) => document.getElementById(id);
  let lastOK = 0;
  let delay = POLL_MS;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function fmtRate(v) {
    if (!v) return "0";
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }

  function fmtDuration(sec) {
    if (!(sec >= 0)) return "–";
    sec = Math.floor(sec);
    const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600);
    const m = Math.floor(sec % 3600 / 60), s = sec % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + s + "s";
    return s + "s";
  }

  // The config hash most live members run: members that differ have drifted.
  function majorityConfig(members, self) {
    const counts = new Map();
    for (const m of members) {
      if (!m.config || m.state === "dead" || m.state === "left") continue;
      counts.set(m.config, (counts.get(m.config) || 0) + 1);
    }
    let best = "", bestN = 0;
    const selfHash = (members.find((m) => m.name === self) || {}).config;
    for (const [hash, n] of counts) {
      if (n > bestN || (n === bestN && hash === selfHash)) { best = hash; bestN = n; }
    }
    return { hash: best, distinct: counts.size };
  }

  function newRow(name) {
    const tr = el("tr");
    tr.dataset.member = name;
    tr.cells_ = {};
    for (const [key, label] of columns) {
      const td = el("td", numeric.has(key) ? "num" : "");
      td.dataset.label = label;
      td.dataset.col = key;
      tr.appendChild(td);
      tr.cells_[key] = td;
    }
    const load = tr.cells_.load;
    const wrap = el("div", "loadcell");
    const bar = el("div", "bar");
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    const fill = el("div", "fill");
    bar.appendChild(fill);
    wrap.appendChild(bar);
    wrap.appendChild(el("span", "pct"));
    load.appendChild(wrap);
    return tr;
  }

  function setText(td, text) {
    if (td.textContent !== text) td.textContent = text;
  }

  function fillRow(tr, m, ctx) {
    const c = tr.cells_;
    const dead = m.state === "dead" || m.state === "left";
    tr.className = "state-" + m.state + (m.name === ctx.self ? " self" : "") + (m.draining ? " draining" : "");
    tr.dataset.state = m.state;
    tr.dataset.draining = String(!!m.draining);

    // Each cell holds one wrapper, so the phone layout (label, value) keeps
    // a name and its badges together.
    const name = el("span", "cv");
    name.appendChild(el("span", "name", m.name));
    if (m.name === ctx.self) name.appendChild(el("span", "badge", "this node"));
    c.name.replaceChildren(name);

    const state = el("span", "cv");
    state.appendChild(el("span", "pill " + m.state, m.state));
    if (m.draining) state.appendChild(el("span", "badge draining", "draining"));
    c.state.replaceChildren(state);

    const pct = Math.max(0, Math.min(100, Math.round((m.load || 0) * 100)));
    const fill = c.load.querySelector(".fill");
    fill.style.width = (dead ? 0 : pct) + "%"; // CSSOM, which a strict CSP allows
    fill.className = "fill" + (pct >= 90 ? " high" : pct >= 60 ? " mid" : "");
    c.load.querySelector(".bar").setAttribute("aria-valuenow", String(pct));
    setText(c.load.querySelector(".pct"), dead ? "–" : pct + "%");

    setText(c.inflight, dead ? "–" : (m.inflight || 0) + " / " + (m.capacity || 0));
    setText(c.rps, dead ? "–" : fmtRate(m.requests_per_sec));
    setText(c.eps, dead ? "–" : fmtRate(m.errors_per_sec));
    c.eps.classList.toggle("errs", true);
    c.eps.classList.toggle("nonzero", !dead && m.errors_per_sec > 0);
    setText(c.cgi, dead ? "–" : String(m.cgi_running || 0));

    let up = "–";
    if (!dead && m.started) {
      up = fmtDuration((ctx.now - Date.parse(m.started)) / 1000);
    }
    setText(c.uptime, up);
    setText(c.version, m.version || "–");

    const drift = !!(m.config && ctx.config.hash && m.config !== ctx.config.hash && !dead);
    const conf = el("span", "cv");
    conf.appendChild(el("span", "hash", m.config || "–"));
    if (drift) conf.appendChild(el("span", "badge", "drift"));
    c.config.replaceChildren(conf);
    c.config.classList.toggle("drift", drift);
    c.config.title = drift ? "differs from the config most members run (" + ctx.config.hash + ")" : "";

    setText(c.address, m.public_url || m.peer_url || "–");
  }

  function render(data) {
    const members = Array.isArray(data.members) ? data.members : [];
    const now = data.time ? Date.parse(data.time) : Date.now();
    const ctx = { self: data.self, now: now, config: majorityConfig(members, data.self) };
    const body = $("member-rows");
    const existing = new Map();
    for (const tr of Array.from(body.rows)) {
      if (tr.dataset.member) existing.set(tr.dataset.member, tr);
      else tr.remove();
    }
    let prev = null;
    for (const m of members) {
      let tr = existing.get(m.name);
      if (tr) existing.delete(m.name);
      else tr = newRow(m.name);
      fillRow(tr, m, ctx);
      const want = prev ? prev.nextSibling : body.firstChild;
      if (want !== tr) body.insertBefore(tr, want);
      prev = tr;
    }
    for (const tr of existing.values()) tr.remove();
    if (!members.length) {
      const tr = el("tr", "empty");
      const td = el("td", "", "no members");
      td.colSpan = columns.length;
      tr.appendChild(td);
      body.appendChild(tr);
    }
    summarise(members, ctx);
  }

  function summarise(members, ctx) {
    const states = { alive: 0, suspect: 0, dead: 0, left: 0 };
    let inflight = 0, capacity = 0, rps = 0, eps = 0, draining = 0, drifted = 0;
    for (const m of members) {
      states[m.state] = (states[m.state] || 0) + 1;
      if (m.state === "dead" || m.state === "left") continue;
      inflight += m.inflight || 0;
      capacity += m.capacity || 0;
      rps += m.requests_per_sec || 0;
      eps += m.errors_per_sec || 0;
      if (m.draining) draining++;
      if (m.config && ctx.config.hash && m.config !== ctx.config.hash) drifted++;
    }
    setText($("sum-members"), String(states.alive + states.suspect) + " live");
    const parts = [];
    for (const s of ["alive", "suspect", "dead", "left"]) if (states[s]) parts.push(states[s] + " " + s);
    if (draining) parts.push(draining + " draining");
    setText($("sum-states"), parts.join(" · "));
    setText($("sum-inflight"), String(inflight));
    setText($("sum-capacity"), "of " + capacity + " capacity");
    setText($("sum-rps"), fmtRate(rps));
    setText($("sum-eps"), fmtRate(eps) + " 5xx/s");
    setText($("sum-config"), ctx.config.hash || "–");
    setText($("sum-drift"), drifted ? (drifted > 1 ? drifted + " members differ" : "1 member differs") : "all live members agree");
    $("sum-config").parentElement.classList.toggle("warn", drifted > 0);
  }

  const upstreamColumns = [
    ["upstream", "Upstream"], ["target", "Target"], ["health", "Health"],
    ["inflight", "In flight here"], ["cluster", "In flight, cluster"], ["failures", "Failures"],
  ];

  // renderUpstreams rebuilds the upstream table: a few rows, replaced
  // whole each second. Target URLs come from the config, yet are still
  // written as text.
  function renderUpstreams(data) {
    const list = Array.isArray(data.upstreams) ? data.upstreams : [];
    const rows = [];
    for (const u of list) {
      for (const t of Array.isArray(u.targets) ? u.targets : []) {
        const tr = el("tr", t.healthy ? "" : "state-dead");
        tr.dataset.upstream = u.name;
        tr.dataset.target = t.url;
        tr.dataset.healthy = String(!!t.healthy);
        const values = {
          upstream: u.name, target: t.url, inflight: String(t.inflight || 0),
          cluster: String(t.cluster_inflight || 0), failures: String(t.failures || 0),
        };
        for (const [key, label] of upstreamColumns) {
          const td = el("td", ["inflight", "cluster", "failures"].includes(key) ? "num" : "");
          td.dataset.label = label;
          td.dataset.col = key;
          if (key === "health") td.appendChild(el("span", "pill " + (t.healthy ? "healthy" : "down"), t.healthy ? "healthy" : "down"));
          else td.textContent = values[key];
          tr.appendChild(td);
        }
        rows.push(tr);
      }
    }
    if (!rows.length) {
      const tr = el("tr", "empty");
      const td = el("td", "", "no upstreams");
      td.colSpan = upstreamColumns.length;
      tr.appendChild(td);
      rows.push(tr);
    }
    $("upstream-rows").replaceChildren(...rows);
  }

  async function getJSON(path) {
    const res = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  }

  function setLive(ok, text) {
    const live = $("live");
    live.dataset.ok = String(ok);
    setText($("live-text"), text);
  }

  async function poll() {
    try {
      const [cluster, upstreams] = await Promise.all([getJSON("/api/cluster"), getJSON("/api/upstreams")]);
      render(cluster);
      renderUpstreams(upstreams);
      lastOK = Date.now();
      delay = POLL_MS;
      setLive(true, "live");
      $("banner").hidden = true;
      setText($("updated"), new Date(lastOK).toLocaleTimeString());
    } catch (err) {
      delay = Math.min(delay * 2, MAX_BACKOFF_MS);
      setLive(false, "offline");
      const banner = $("banner");
      banner.hidden = false;
      setText(banner, "Cannot reach this node's admin API (" + err.message + ")" +
        (lastOK ? "; the table shows data from " + fmtDuration((Date.now() - lastOK) / 1000) + " ago." : "."));
    }
    setTimeout(poll, delay);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", poll);
  else poll();
})();
