// etcdsd console: plain modern JS, no framework, no build step.
// The server streams whole views over Server-Sent Events (/api/stream);
// this script draws them, counts lease TTLs down between refreshes, and
// sends the operator's writes with the token in a header.
"use strict";

const TOKEN_KEY = "etcdsd-console-token";
const EJECTED_TIP = "Ejection is passive and client-side: each client's endpointer ejects an instance " +
  "after consecutive failures and tells no one. etcd holds no ejection, so the console shows none. " +
  "Count them in each client: etcdsd_endpointer_ejections_total, or endpointer.WithEjectionHook.";

const state = {
  config: null,
  token: sessionStorage.getItem(TOKEN_KEY),
  service: null,      // the service whose page is open, null for the overview
  source: null,       // the EventSource
  view: null,         // the last view received
  leases: null,       // the last leases received, and when
  leasesAt: 0,
  logReset: true,     // the next log event replaces the list
  rows: new Map(),    // instance id -> row of the open service page
};

// h builds an element: h("td", {class: "num", title: "…"}, child, "text").
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

// put replaces el's children, skipping null, undefined and false ones.
function put(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

const $ = (id) => document.getElementById(id);
const plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + "s"}`;
const clock = (ms) => new Date(ms).toLocaleTimeString([], {hour12: false});
const servicePath = (name) => "/services/" + encodeURIComponent(name);

// --- start, routing and the stream ---------------------------------------

async function start() {
  const m = location.hash.match(/^#token=([0-9A-Za-z_-]+)$/);
  if (m) {
    setToken(m[1]);
    history.replaceState(null, "", location.pathname + location.search);
  }
  try {
    state.config = await (await fetch("/api/config")).json();
  } catch (err) {
    toast("cannot read the console's configuration: " + err, true);
    return;
  }
  renderHeader();
  document.addEventListener("click", followLink);
  window.addEventListener("popstate", route);
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = $("token-input").value.trim();
    if (v) setToken(v);
    $("token-input").value = "";
    renderHeader();
    rerender();
  });
  $("mode").addEventListener("click", () => {
    if (needsToken()) $("token-form").hidden = false;
  });
  setInterval(renderLeases, 1000);
  route();
}

function setToken(t) {
  state.token = t;
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

const canWrite = () => state.config && state.config.allowWrites && !!state.token;
const needsToken = () => state.config && state.config.allowWrites && !state.token;

function followLink(e) {
  const a = e.target.closest("a[data-nav]");
  if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  if (a.getAttribute("href") !== location.pathname) history.pushState(null, "", a.getAttribute("href"));
  route();
}

function route() {
  const m = location.pathname.match(/^\/services\/([^/]+)$/);
  state.service = m ? decodeURIComponent(m[1]) : null;
  state.view = null;
  state.leases = null;
  state.rows = new Map();
  put($("view"), h("p", {class: "empty"}, "Loading…"));
  renderCrumbs();
  document.title = (state.service ? state.service + " · " : "") + "etcdsd console";
  connect();
}

function connect() {
  if (state.source) state.source.close();
  const url = "/api/stream" + (state.service ? "?service=" + encodeURIComponent(state.service) : "");
  const es = new EventSource(url);
  state.source = es;
  es.addEventListener("open", () => { state.logReset = true; state.streamOk = true; renderLive(); });
  es.addEventListener("error", () => { state.streamOk = false; renderLive(); });
  es.addEventListener("overview", (e) => { state.view = JSON.parse(e.data); renderOverview(); });
  es.addEventListener("service", (e) => { state.view = JSON.parse(e.data); renderService(); });
  es.addEventListener("leases", (e) => { state.leases = JSON.parse(e.data); state.leasesAt = Date.now(); renderLeases(); });
  es.addEventListener("log", (e) => renderLog(JSON.parse(e.data)));
}

// renderLive says "live" only while the page's stream is open and the
// console reads etcd: the banner below says why not.
function renderLive() {
  const etcdOk = !state.view || !state.view.etcd || state.view.etcd.ok;
  const ok = state.streamOk && etcdOk;
  $("live").className = "status " + (ok ? "live" : "down");
  $("live-text").textContent = !state.streamOk ? "reconnecting…" : etcdOk ? "live" : "etcd unreachable";
  $("live").title = !state.streamOk ? "The page lost its stream from the console; it reconnects" :
    etcdOk ? "Live updates from etcd's watch, streamed to this page" : "The console cannot read etcd: this page shows the last known state";
}

function rerender() {
  if (!state.view) return;
  state.rows = new Map();
  if (state.service) renderService(); else renderOverview();
}

// --- header, banner, breadcrumbs ------------------------------------------

function renderHeader() {
  const c = state.config;
  put($("meta"), "etcd ", h("code", {}, (c.endpoints || []).join(", ") || "?"),
    "  ·  instances ", h("code", {}, c.root), "  ·  properties ", h("code", {}, c.propertiesRoot));
  const mode = $("mode");
  if (!c.allowWrites) {
    mode.className = "mode";
    mode.textContent = "read-only";
    mode.title = "Start the console with --allow-writes to drain and weight from here.";
  } else if (!state.token) {
    mode.className = "mode need-token";
    mode.textContent = "writes: token needed";
    mode.title = "Click to enter the token printed when the console started.";
  } else {
    mode.className = "mode writes";
    mode.textContent = "writes enabled";
    mode.title = "Writes are sent with the token printed at start, in the " + c.tokenHeader + " header.";
  }
  $("token-form").hidden = !needsToken();
}

function renderBanner(etcd) {
  renderLive();
  const b = $("banner");
  if (!etcd || etcd.ok) { b.hidden = true; return; }
  b.hidden = false;
  b.textContent = `etcd cannot be read since ${clock(etcd.since)}: ${etcd.error}. ` +
    "This page shows the last known state; the watch retries and catches up when etcd answers.";
}

function renderCrumbs() {
  const c = $("crumbs");
  if (!state.service) { put(c, "Services"); return; }
  put(c, h("a", {href: "/", "data-nav": true}, "Services"), h("span", {class: "sep"}, "/"), state.service);
}

// --- overview -------------------------------------------------------------

function renderOverview() {
  const v = state.view;
  renderBanner(v.etcd);
  const total = v.services.reduce((n, s) => n + s.instances, 0);
  const drained = v.services.reduce((n, s) => n + s.drained, 0);
  const head = h("div", {class: "page-head"},
    h("div", {}, h("h1", {}, "Services"),
      h("p", {class: "sub"}, `${plural(v.services.length, "service")} · ${plural(total, "instance")} · ${drained} drained · etcd revision ${v.revision}`)));
  if (v.services.length === 0) {
    put($("view"), head, h("div", {class: "card"},
      h("p", {class: "empty"}, `No service under ${state.config.root} yet. This page updates as soon as one registers.`)));
    return;
  }
  const rows = v.services.map((s) => h("tr", {dataset: {service: s.name}, onclick: (e) => {
    if (!e.target.closest("a")) { history.pushState(null, "", servicePath(s.name)); route(); }
  }},
    h("td", {}, h("a", {href: servicePath(s.name), "data-nav": true}, s.name),
      s.serviceDrained ? h("span", {class: "badge drained", title: "A drain of the whole service is set"}, "service drained") : null),
    h("td", {class: "num instances"}, String(s.instances)),
    h("td", {class: "num in-rotation"}, String(s.inRotation)),
    h("td", {class: "num drained"}, s.drained ? h("span", {class: "badge drained plain"}, String(s.drained)) : "0"),
    h("td", {class: "num ejected"}, h("span", {class: "dash", title: EJECTED_TIP}, "—")),
    h("td", {class: "versions"}, versionChips(s.versions)),
    h("td", {class: "num"}, h("span", {class: "rev", title: "Last change to an instance or property of the service"}, s.revision ? "rev " + s.revision : "—")),
  ));
  put($("view"), head, h("div", {class: "card"}, h("table", {class: "grid services"},
    h("thead", {}, h("tr", {},
      h("th", {}, "Service"), h("th", {class: "num"}, "Instances"), h("th", {class: "num"}, "In rotation"),
      h("th", {class: "num"}, "Drained"), h("th", {class: "num", title: EJECTED_TIP}, "Ejected"),
      h("th", {}, "Versions"), h("th", {class: "num"}, "Last change"))),
    h("tbody", {}, rows))));
}

function versionChips(versions) {
  if (!versions || versions.length === 0) return h("span", {class: "muted"}, "—");
  return versions.map((v) => h("span", {class: "chip ver", title: plural(v.count, "instance") + (v.version ? " of version " + v.version : " without a version")},
    v.version || "no version", h("b", {}, " ×" + v.count)));
}

// --- service page -----------------------------------------------------------

function renderService() {
  const v = state.view;
  renderBanner(v.etcd);
  const s = v.summary;
  const writes = canWrite();
  const head = h("div", {class: "page-head"},
    h("div", {},
      h("h1", {}, v.name, s.serviceDrained ? h("span", {class: "badge drained"}, "service drained") : null),
      h("p", {class: "sub"}, v.exists ? `${plural(s.instances, "instance")} · etcd revision ${v.revision}` :
        `No instance or property of ${v.name} in etcd. This page updates as soon as one appears.`)),
    writes && v.exists ? h("div", {class: "actions-row"},
      s.serviceDrained
        ? h("button", {class: "btn good", type: "button", "data-action": "undrain-service", onclick: (e) => write(e.target, "POST", `/api/services/${encodeURIComponent(v.name)}/undrain`, null, `undrained ${v.name}`)}, "Undrain service")
        : h("button", {class: "btn warn", type: "button", "data-action": "drain-service", title: "Take every instance out of rotation (an instance's own disabled=false keeps it in)", onclick: (e) => write(e.target, "POST", `/api/services/${encodeURIComponent(v.name)}/drain`, null, `drained every instance of ${v.name}`)}, "Drain service"))
      : null);
  const stats = h("div", {class: "stats"},
    stat("Instances", s.instances),
    stat("In rotation", s.inRotation, "up"),
    stat("Drained", s.drained, "drained"),
    h("div", {class: "card stat", title: EJECTED_TIP}, h("div", {class: "k"}, "Ejected"), h("div", {class: "v"}, h("span", {class: "dash"}, "—"))),
    h("div", {class: "card stat"}, h("div", {class: "k"}, "Versions"), h("div", {class: "v small"}, versionChips(s.versions))));

  // Rows are kept by id, so that a weight being typed survives updates.
  const focused = document.activeElement;
  const tbody = h("tbody", {});
  const rows = new Map();
  for (const inst of v.instances) {
    const row = state.rows.get(inst.id) || newRow(inst.id);
    fillRow(row, inst, writes);
    rows.set(inst.id, row);
    tbody.append(row.tr);
  }
  const flashed = [...rows.keys()].filter((id) => state.rows.size > 0 && !state.rows.has(id));
  state.rows = rows;
  const table = h("div", {class: "card"}, v.instances.length === 0 ? h("p", {class: "empty"}, "No instance registered now.") :
    h("table", {class: "grid instances"},
      h("thead", {}, h("tr", {},
        h("th", {}, "Instance"), h("th", {}, "Version"), h("th", {}, "Metadata"), h("th", {class: "num"}, "Weight"),
        h("th", {}, "State"), h("th", {title: "TTL left of the lease of the instance's key (etcd TimeToLive), read every 2 s"}, "Lease TTL"),
        h("th", {class: "num", title: "etcd revision of the last change to the instance or a property applying to it"}, "Changed"),
        writes ? h("th", {}, "Actions") : null)),
      tbody));
  const extra = [];
  if (v.properties.length || (v.orphans && v.orphans.length)) {
    extra.push(h("div", {class: "section-title"}, "Properties"));
    extra.push(h("div", {class: "card props"},
      v.properties.length ? h("p", {}, "Whole service: ", v.properties.map(propChip)) : null,
      (v.orphans || []).map((o) => h("p", {}, h("span", {class: "mono"}, o.id), h("span", {class: "muted"}, " (not registered now): "), o.properties.map(propChip)))));
  }
  put($("view"), head, stats, table, ...extra);
  // Keep a focused weight input focused across the redraw.
  if (focused !== document.activeElement && [...rows.values()].some((r) => r.input === focused)) focused.focus();
  for (const id of flashed) flash(rows.get(id).tr);
  renderLeases();
}

function stat(label, value, cls) {
  return h("div", {class: "card stat " + (cls || "")}, h("div", {class: "k"}, label), h("div", {class: "v"}, String(value)));
}

function propChip(p) {
  return h("span", {class: "chip", title: "set at revision " + p.revision}, `${p.name}=${p.value}`);
}

function flash(tr) {
  tr.classList.add("flash");
  requestAnimationFrame(() => requestAnimationFrame(() => tr.classList.remove("flash")));
}

function newRow(id) {
  const row = {id, tr: h("tr", {dataset: {id}}), cells: {}};
  for (const name of ["instance", "version", "metadata", "weight", "state", "lease", "changed", "actions"]) {
    row.cells[name] = h("td", {class: name + (name === "weight" || name === "changed" ? " num" : "")});
  }
  row.input = h("input", {type: "number", min: 1, max: 1048576, step: 1, placeholder: "weight", title: "an integer from 1 to 1048576", "aria-label": "weight of " + id});
  row.input.addEventListener("keydown", (e) => { if (e.key === "Enter") row.setBtn.click(); });
  row.setBtn = h("button", {class: "btn", type: "button", "data-action": "set-weight"}, "Set");
  row.clearBtn = h("button", {class: "btn", type: "button", "data-action": "clear-weight"}, "Clear");
  row.drainBtn = h("button", {class: "btn", type: "button"});
  row.setBtn.addEventListener("click", () => {
    const w = row.input.value.trim();
    if (!/^\d+$/.test(w)) { toast(`weight ${JSON.stringify(w)}: give an integer from 1 to 1048576`, true); return; }
    write(row.setBtn, "PUT", instancePath(row) + "/weight", {weight: Number(w)}, `set the weight of ${row.service}/${row.id} to ${w}`)
      .then((ok) => { if (ok) row.input.value = ""; });
  });
  row.clearBtn.addEventListener("click", () => write(row.clearBtn, "DELETE", instancePath(row) + "/weight", null, `cleared the weight override of ${row.service}/${row.id}`));
  row.drainBtn.addEventListener("click", () => {
    const op = row.drainBtn.dataset.action;
    write(row.drainBtn, "POST", instancePath(row) + "/" + op, null, `${op}ed ${row.service}/${row.id}`);
  });
  row.tr.append(...Object.values(row.cells));
  return row;
}

const instancePath = (row) => `/api/services/${encodeURIComponent(row.service)}/instances/${encodeURIComponent(row.id)}`;

function fillRow(row, inst, writes) {
  row.service = state.view.name;
  row.inst = inst;
  const c = row.cells;
  row.tr.className = inst.drained ? "is-drained" : "";
  put(c.instance, h("div", {class: "id", title: inst.key}, inst.id), h("div", {class: "addr"}, inst.address));
  put(c.version, inst.version ? h("span", {class: "chip ver"}, inst.version) : h("span", {class: "muted"}, "—"));
  const md = Object.entries(inst.metadata || {}).sort(([a], [b]) => a.localeCompare(b));
  put(c.metadata, ...(md.length ? md.map(([k, v]) => h("span", {class: "chip"}, `${k}=${v}`)) : [h("span", {class: "muted"}, "—")]),
    ...(inst.properties || []).map(propChip));
  const registered = inst.registeredWeight || 1;
  put(c.weight, h("span", {class: "weight"}, String(inst.weight)),
    inst.weightOverride ? h("span", {class: "set", title: `override set on the ${inst.weightOverride} at revision ${inst.weightRevision}; registered weight ${registered}`}, "set") : null);
  let badge;
  if (inst.drained && inst.drainedBy === "service") badge = h("span", {class: "badge drained", title: `the whole service is drained (revision ${inst.drainRevision})`}, "drained · service");
  else if (inst.drained) badge = h("span", {class: "badge drained", title: `drained at revision ${inst.drainRevision}; its process keeps running`}, "drained");
  else if (inst.pinned) badge = h("span", {class: "badge pinned", title: `its own disabled=false (revision ${inst.drainRevision}) keeps it in rotation while the service is drained`}, "up · pinned");
  else badge = h("span", {class: "badge up"}, "up");
  put(c.state, badge);
  put(c.changed, h("span", {class: "rev", title: `key ${inst.key} at revision ${inst.revision}` + (inst.changed !== inst.revision ? `; a property at revision ${inst.changed}` : "")}, "rev " + inst.changed));
  if (!writes) { c.actions.remove(); return; }
  if (!c.actions.isConnected) row.tr.append(c.actions);
  const byService = inst.drained && inst.drainedBy === "service";
  row.drainBtn.dataset.action = inst.drained && !byService ? "undrain" : "drain";
  row.drainBtn.textContent = inst.drained && !byService ? "Undrain" : "Drain";
  row.drainBtn.className = "btn " + (inst.drained && !byService ? "good" : "warn");
  row.drainBtn.disabled = byService;
  row.drainBtn.title = byService ? "Drained with its service: undrain the service" : "";
  row.clearBtn.disabled = inst.weightOverride !== "instance";
  for (const b of [row.drainBtn, row.setBtn, row.clearBtn]) b.classList.remove("pending");
  if (!c.actions.firstChild) c.actions.append(h("div", {class: "controls"}, row.drainBtn, h("span", {class: "group"}, row.input, row.setBtn, row.clearBtn)));
}

// --- leases -------------------------------------------------------------------

function renderLeases() {
  if (!state.service || !state.leases) return;
  const elapsed = (Date.now() - state.leasesAt) / 1000;
  for (const [id, row] of state.rows) {
    const l = state.leases.leases[id];
    const cell = row.cells.lease;
    cell.className = "lease";
    if (!l) { put(cell, h("span", {class: "muted"}, "…")); continue; }
    if (!l.id) { put(cell, h("span", {class: "muted", title: "The key has no lease: it never expires"}, "no lease")); continue; }
    if (l.error || l.ttl < 0) {
      cell.className = "lease gone";
      put(cell, h("span", {class: "t", title: l.error || `lease ${l.id} has expired`}, l.error ? "unknown" : "expired"));
      continue;
    }
    const left = Math.max(0, Math.round(l.ttl - elapsed - l.age / 1000));
    const frac = l.granted ? Math.min(1, left / l.granted) : 0;
    cell.className = "lease" + (frac < 0.34 ? " low" : "");
    const bar = h("span");
    bar.style.width = Math.round(frac * 100) + "%";
    put(cell, h("div", {class: "t", title: `lease ${l.id}, granted ${l.granted} s; kept alive by the registrar's heartbeats`}, `${left} s`, h("span", {class: "muted"}, ` / ${l.granted} s`)),
      h("div", {class: "bar"}, bar));
  }
}

// --- event log ------------------------------------------------------------------

function renderLog(entries) {
  const list = $("log");
  const first = state.logReset; // what happened before the page opened is not news
  if (first) { list.replaceChildren(); state.logReset = false; }
  const empty = list.querySelector(".empty");
  if (empty) empty.remove();
  for (const e of entries) {
    const who = e.service ? (e.id ? `${e.service}/${e.id}` : e.service) : "";
    // The watches of instances and of properties deliver on their own, so
    // entries arrive nearly but not exactly in revision order: place each
    // by revision (an etcd error, which has none, at the top).
    const order = e.revision || Number(list.firstElementChild?.dataset.order || 0);
    const li = h("li", {class: first ? "" : "fresh", dataset: {seq: e.seq, action: e.action, order}},
      h("div", {class: "r"}, h("div", {title: "etcd revision"}, e.revision ? "#" + e.revision : "—"), h("div", {class: "when"}, clock(e.time))),
      h("div", {class: "what"}, h("span", {class: "act " + e.action.replace(/ /g, "-")}, e.action),
        who ? h("a", {class: "who", href: servicePath(e.service), "data-nav": true}, who) : null),
      e.detail ? h("div", {class: "detail"}, e.detail + (e.resync ? " (found by a resync)" : "")) : null);
    let after = list.firstElementChild;
    while (after && Number(after.dataset.order) > order) after = after.nextElementSibling;
    list.insertBefore(li, after);
    if (!first) setTimeout(() => li.classList.remove("fresh"), 1500);
  }
  while (list.children.length > 200) list.lastChild.remove();
  if (!list.firstChild) list.append(h("li", {class: "empty"}, "No change yet."));
}

// --- writes ---------------------------------------------------------------------

async function write(button, method, path, body, done) {
  if (!canWrite()) {
    renderHeader();
    toast(needsToken() ? "enter the write token first" : "the console is read-only", true);
    return false;
  }
  const headers = {[state.config.tokenHeader]: state.token};
  if (body) headers["Content-Type"] = "application/json";
  button.disabled = true;
  button.classList.add("pending");
  try {
    const res = await fetch(path, {method, headers, body: body ? JSON.stringify(body) : undefined});
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      toast(data.error || `${method} ${path}: ${res.status}`, true);
      if (res.status === 403 && /token/.test(data.error || "")) { setToken(null); renderHeader(); rerender(); }
      return false;
    }
    toast(done);
    return true;
  } catch (err) {
    toast(`${method} ${path}: ${err}`, true);
    return false;
  } finally {
    // The stream redraws the row with the state etcd now holds.
    button.disabled = false;
  }
}

let toastTimer;
function toast(text, isError) {
  const t = $("toast");
  t.textContent = text;
  t.className = "toast" + (isError ? " error" : "");
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, isError ? 6000 : 2500);
}

start();
