// The health dashboards: polls the dashboard API every two seconds and redraws its tables.
// Two scopes: a platform operator sees the platform (services, instances, streams, delivery
// of every gateway); a tenant admin sees their own organisation (its runs, service levels,
// errors by code, audit log) and nothing platform-wide. Someone with both roles sees both.
// A failed poll is shown (and retried), never silently ignored.

import { ApiError, Session } from "./session.js";
import { el } from "./runs.js";

const $ = (id) => document.getElementById(id);
const session = Session.restore();
const POLL_MS = 2000;
const WINDOWS = { 300: "5 min", 3600: "1 h", 86400: "24 h" };
let timer = null;
let stopped = false;

const fmt = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"));
const fmtMs = (v) => (v === null || v === undefined ? "–" : `${Number(v).toLocaleString("en-US", { maximumFractionDigits: 1 })} ms`);
const windowName = (s) => WINDOWS[s] || `${Math.round(s / 60)} min`;
const badge = (state) => el("span", { class: "badge", "data-state": state, text: state.replace("_", " ") });

function table(caption, head, rows, { numeric = [], rowAttrs = () => ({}) } = {}) {
  if (!rows.length) return el("p", { class: "muted", text: `${caption}: none.` });
  const cls = (i) => (numeric.includes(i) ? "num" : null);
  return el("table", {},
    el("caption", { class: "sr-only", text: caption }),
    el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { scope: "col", class: cls(i), text: h })))),
    el("tbody", {}, rows.map((row, r) => el("tr", rowAttrs(r), row.map((cell, i) => el("td", { class: cls(i) }, cell))))));
}

function put(id, ...nodes) {
  $(id).replaceChildren(...nodes);
}

// --- sections ------------------------------------------------------------------------------

function renderServices(view) {
  put("services", table("Services", ["Service", "State", "Healthy instances", "Down instances"],
    view.services.map((s) => [s.service, badge(s.state), `${s.up} of ${s.live}`, fmt(s.down)]),
    { numeric: [3], rowAttrs: (r) => ({ "data-service": view.services[r].service, "data-state": view.services[r].state }) }));
  const details = (d) => Object.entries(d || {})
    .filter(([key]) => !key.startsWith("delivery_latency_"))
    .map(([key, value]) => `${key}=${value}`).join(" ");
  put("instances", table("Instances", ["Service", "Instance", "State", "Last heartbeat", "Breakers", "Details"],
    view.instances.map((b) => [b.service, b.instance, badge(b.state), `${b.age_s} s ago`,
      el("span", {}, Object.entries(b.breakers || {}).map(([name, st]) => el("span", { class: "breaker" }, `${name} `, badge(st)))),
      el("code", { class: "details", text: details(b.details) })]),
    { rowAttrs: (r) => ({ "data-instance": view.instances[r].instance, "data-service": view.instances[r].service, "data-state": view.instances[r].state }) }));
}

function renderSla(sla, delivery) {
  const rows = [];
  const keys = [];
  const add = (name, window, p) => {
    keys.push({ "data-measure": name, "data-window": window, "data-samples": p.count });
    rows.push([name, windowName(window), fmt(p.count), fmtMs(p.p50), fmtMs(p.p95), fmtMs(p.p99)]);
  };
  for (const w of sla ? sla.windows : []) add("Time to first event", w.window_s, w.time_to_first_event_ms);
  for (const w of sla ? sla.windows : []) add("Run duration", w.window_s, w.run_duration_ms);
  for (const w of delivery ? delivery.latency : []) add("Delivery latency", w.window_s, w);
  const runs = (sla ? sla.windows : []).map((w) => [windowName(w.window_s), fmt(w.runs),
    fmt(w.runs_by_status.completed), fmt(w.runs_by_status.needs_data), fmt(w.runs_by_status.failed),
    fmt(w.runs_by_status.cancelled), fmt(w.tool_calls)]);
  put("sla",
    table("Latency percentiles", ["Measure", "Window", "Samples", "p50", "p95", "p99"], rows,
      { numeric: [2, 3, 4, 5], rowAttrs: (r) => keys[r] }),
    table("Runs by outcome", ["Window", "Runs", "Completed", "Needs data", "Failed", "Cancelled", "Tool calls"], runs,
      { numeric: [1, 2, 3, 4, 5, 6] }));
}

function renderDelivery(view) {
  const t = view.totals;
  const rows = [["All gateways", fmt(t.events_sent), fmt(t.events_acked), fmt(t.events_resent), fmt(t.events_replayed)]]
    .concat(view.gateways.map((g) => [g.instance, fmt(g.events_sent), fmt(g.events_acked), fmt(g.events_resent), fmt(g.events_replayed)]));
  const attrs = (r) => (r === 0 ? { "data-gateway": "all", "data-sent": t.events_sent }
    : { "data-gateway": view.gateways[r - 1].instance, "data-sent": view.gateways[r - 1].events_sent });
  put("delivery", table("Event frames", ["Gateway", "Sent", "Acked", "Re-sent", "Replayed"], rows,
    { numeric: [1, 2, 3, 4], rowAttrs: attrs }),
    el("p", { class: "muted", text: "Counted since each gateway started." }));
}

function renderErrors(sla) {
  if (!sla) return;
  const keyed = new Map();
  sla.windows.forEach((w, i) => {
    for (const e of w.errors) {
      const key = `${e.source}|${e.code}|${e.tool || ""}`;
      if (!keyed.has(key)) keyed.set(key, { ...e, counts: sla.windows.map(() => 0) });
      keyed.get(key).counts[i] = e.count;
    }
  });
  const last = sla.windows[sla.windows.length - 1];
  const rate = (e) => {
    const base = e.source === "run" ? last.runs : last.tool_calls;
    return base ? `${((e.counts[e.counts.length - 1] / base) * 100).toFixed(1)} %` : "–";
  };
  const head = ["Source", "Code", "Tool", ...sla.windows.map((w) => windowName(w.window_s)), `Rate (${windowName(last.window_s)})`];
  const numeric = sla.windows.map((_w, i) => i + 3).concat([sla.windows.length + 3]);
  put("errors", table("Errors by code", head, [...keyed.values()].map((e) =>
    [e.source === "run" ? "run failed" : "tool error", e.code, e.tool || "–", ...e.counts.map(fmt), rate(e)]), { numeric }));
}

function renderStreams(view) {
  put("streams", table("Streams", ["Stream", "Messages", "Bytes", "First seq", "Last seq", "Consumers", "Replicas"],
    view.streams.map((s) => (s.error ? [s.name, s.error, "", "", "", "", ""]
      : [s.name, fmt(s.messages), fmt(s.bytes), fmt(s.first_seq), fmt(s.last_seq), fmt(s.consumers), `${s.current_replicas}/${s.replicas}`])),
    { numeric: [1, 2, 3, 4, 5] }));
  put("consumers", table("Durable consumers", ["Stream", "Consumer", "Pending", "Unacked", "Lag", "Redelivered"],
    view.consumers.map((c) => (c.error ? [c.stream, c.name, c.error, "", "", ""]
      : [c.stream, c.name, fmt(c.pending), fmt(c.ack_pending), fmt(c.lag), fmt(c.redelivered)])),
    { numeric: [2, 3, 4, 5], rowAttrs: (r) => ({ "data-consumer": view.consumers[r].name }) }));
  put("projectors", table("Projectors", ["Store", "Lag (events)", "Checkpoint", "Breaker"],
    view.projectors.map((p) => [p.store, fmt(p.lag), fmt(p.checkpoint), p.breaker ? badge(p.breaker) : "–"]),
    { numeric: [1, 2] }));
}

function renderAudit(page) {
  put("audit", table("Security events", ["When", "Action", "Outcome", "Actor", "Address", "Target"],
    page.entries.map((e) => [String(e.at || "").replace("T", " ").slice(0, 19), e.action, badge(e.outcome || "–"),
      e.actor_user_id || "–", e.source_ip || "–", e.target || "–"])));
}

// --- polling -------------------------------------------------------------------------------

async function poll() {
  try {
    await refresh();
  } catch (error) {
    $("refresh-state").dataset.state = "reconnecting";
    $("refresh-state").textContent = `Could not draw the figures: ${error.message}; retrying`;
  } finally {
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }
}

function renderRuns(page) {
  put("runs", table("Latest runs", ["Started", "Run", "User", "Status", "Duration", "Tool calls", "Error"],
    page.runs.map((r) => [String(r.started_at || "").replace("T", " ").slice(0, 19), r.id, r.user_id, badge(r.status),
      fmtMs(r.duration_ms), fmt(r.tool_calls), r.error_code || "–"]),
    { numeric: [4, 5], rowAttrs: (r) => ({ "data-run": page.runs[r].id, "data-status": page.runs[r].status }) }));
}

const scopes = () => ({ platform: session.isOperator, tenant: session.isAdmin });

async function refresh() {
  const ask = (path) => session.api("GET", path);
  const skip = Promise.resolve(null);
  const { platform, tenant } = scopes();
  const asks = {
    services: platform ? ask("/api/v1/dashboard/services") : skip,
    streams: platform ? ask("/api/v1/dashboard/streams") : skip,
    delivery: platform ? ask("/api/v1/dashboard/delivery") : skip,
    sla: tenant ? ask("/api/v1/dashboard/sla") : skip,
    runs: tenant ? ask("/api/v1/dashboard/runs?limit=15") : skip,
    audit: tenant ? ask("/api/v1/audit?limit=25") : skip,
  };
  const names = Object.keys(asks);
  const settled = await Promise.allSettled(Object.values(asks));
  const got = Object.fromEntries(names.map((n, i) => [n, settled[i].status === "fulfilled" ? settled[i].value : null]));
  const failures = settled.filter((r) => r.status === "rejected").map((r) => r.reason);
  if (failures.some((f) => f instanceof ApiError && f.status === 403)) return forbidden();
  if (got.services) renderServices(got.services);
  if (got.streams) renderStreams(got.streams);
  if (got.delivery) renderDelivery(got.delivery);
  if (tenant) renderSla(got.sla, got.delivery);
  if (got.sla) renderErrors(got.sla);
  if (got.runs) renderRuns(got.runs);
  if (got.audit) renderAudit(got.audit);
  const state = $("refresh-state");
  if (failures.length) {
    state.dataset.state = "reconnecting";
    state.textContent = `Some figures are stale: ${failures[0].message || "no answer"}; retrying`;
  } else {
    state.dataset.state = "open";
    state.textContent = `Live · updated ${new Date().toLocaleTimeString("en-GB")}`;
  }
}

function forbidden() {
  stopped = true;
  clearTimeout(timer);
  $("dash").hidden = true;
  $("forbidden").hidden = false;
  $("refresh-state").dataset.state = "refused";
  $("refresh-state").textContent = "Not allowed";
}

function start() {
  $("signin").hidden = true;
  $("who").hidden = false;
  $("who-email").textContent = session.email || "";
  const { platform, tenant } = scopes();
  if (!platform && !tenant) return forbidden();
  const dash = $("dash");
  dash.dataset.scope = [platform && "platform", tenant && "tenant"].filter(Boolean).join(" ");
  for (const section of dash.querySelectorAll("section[data-scope]")) {
    section.hidden = !(section.dataset.scope === "platform" ? platform : tenant);
  }
  $("dash-title").textContent = platform ? "Apex health" : "Your organisation";
  document.title = platform ? "Apex · Health" : "Apex · Your organisation";
  dash.hidden = false;
  clearTimeout(timer);
  stopped = false;
  return poll();
}

function showSignIn(message = "") {
  stopped = true;
  clearTimeout(timer);
  $("dash").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("refresh-state").dataset.state = "offline";
  $("refresh-state").textContent = "Signed out";
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  try {
    await session.login(form.get("email").trim(), form.get("password"));
    start();
  } catch (error) {
    $("signin-error").textContent = error.message || "Sign-in failed.";
  }
});
$("sign-out").addEventListener("click", () => session.logout());
session.addEventListener("signedout", (e) => showSignIn(e.detail.reason ? "Your session has ended; please sign in again." : ""));

if (session.signedIn) start();
else showSignIn();
