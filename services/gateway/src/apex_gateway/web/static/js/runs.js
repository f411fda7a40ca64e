// A thread's conversation built from its events alone: the user's messages, each run's
// live timeline (the five lifecycle events plus the run's own), and the answer with its
// report. Every text that came from the network is inserted as text or through the
// escaping markdown renderer, never as raw HTML.

import { renderMarkdown } from "./markdown.js";

const AGENT_NAMES = { supervisor: "Supervisor", triage: "Triage", data_helper: "Data helper", reporting: "Reporting" };
const STATUS_TEXT = {
  running: "Working…", completed: "Completed", needs_data: "Needs data", failed: "Failed", cancelled: "Cancelled",
};

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const money = (v) => (v === null || v === undefined ? "–" : `$${Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`);
const ms = (v) => (v === null || v === undefined ? "–" : `${Math.round(v).toLocaleString("en-US")} ms`);
const agentName = (a) => AGENT_NAMES[a] || a || "agent";
const day = (v) => (v ? String(v).slice(0, 10) : "…");

function compact(value, limit = 160) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

// A tool result in one line: its scalar figures and the size of its lists.
export function summarise(result) {
  if (!result || typeof result !== "object") return "no result";
  const parts = [];
  for (const [key, value] of Object.entries(result)) {
    if (["sql", "call_id", "queries"].includes(key)) continue;
    if (Array.isArray(value)) parts.push(`${key}: ${value.length} ${value.length === 1 ? "item" : "items"}`);
    else if (value === null || typeof value !== "object") parts.push(`${key}: ${compact(value, 40)}`);
    if (parts.length >= 5) break;
  }
  return parts.join(" · ") || compact(result, 80);
}

class RunView {
  constructor(runId, container, onCancel) {
    this.runId = runId;
    this.tools = new Map();
    this.drafts = new Map();  // message_id -> {chunks, node}, in the order they started
    this.status = el("span", { class: "status", "data-status": "running", text: STATUS_TEXT.running });
    this.cancel = el("button", { type: "button", class: "danger", text: "Cancel run", onclick: () => onCancel(runId) });
    this.timeline = el("ol", { class: "timeline", "aria-live": "polite", "aria-label": "Run timeline" });
    this.details = el("details", { open: true },
      el("summary", {}, "Run timeline · ", this.status), this.timeline);
    this.answer = el("div", { class: "answer" });
    this.node = el("section", { class: "run", "data-run": runId, "aria-label": "Run" },
      el("div", { class: "run-actions" }, this.cancel), this.details, this.answer);
    container.append(this.node);
  }

  item(seq, event, ...content) {
    const agent = (event.data && event.data.agent) || event.agent || null;
    const li = el("li", { "data-seq": seq, "data-type": event.type, "data-agent": agent }, ...content);
    this.timeline.append(li);
    return li;
  }

  finish(status, live) {
    this.status.dataset.status = status;
    this.status.textContent = STATUS_TEXT[status] || status;
    this.cancel.remove();
    if (!live) this.details.open = false;
  }
}

export class Conversation {
  constructor(container, { onCancel, onUploadHint }) {
    this.container = container;
    this.onCancel = onCancel;
    this.onUploadHint = onUploadHint;
    this.runs = new Map();
    this.pending = new Map();  // client_msg_id -> optimistic bubble
    this.superseded = new Set();  // streamed message ids that no longer count
  }

  clear() {
    this.container.replaceChildren();
    this.runs.clear();
    this.pending.clear();
    this.superseded.clear();
  }

  showPending(clientMsgId, text) {
    const bubble = el("div", { class: "msg user" }, text, el("div", { class: "pending", text: "Sending…" }));
    this.pending.set(clientMsgId, bubble);
    this.container.append(bubble);
  }

  run(runId) {
    if (!this.runs.has(runId)) this.runs.set(runId, new RunView(runId, this.container, this.onCancel));
    return this.runs.get(runId);
  }

  apply(seq, event, live) {
    const handler = HANDLERS[event.type];
    if (handler) handler(this, seq, event, event.data || {}, live);
  }
}

function userMessage(conv, seq, event, data) {
  const bubble = el("div", { class: "msg user", "data-seq": seq }, data.content);
  const pending = conv.pending.get(data.client_msg_id);
  if (pending) {
    pending.replaceWith(bubble);
    conv.pending.delete(data.client_msg_id);
  } else {
    conv.container.append(bubble);
  }
  if (event.run_id) conv.run(event.run_id);
}

const agentItem = (text) => (conv, seq, event, data) =>
  conv.run(event.run_id).item(seq, event, el("span", { class: "agent", text: agentName(data.agent || event.agent) }), ` ${text(data)}`);

function toolExecuting(conv, seq, event, data) {
  const run = conv.run(event.run_id);
  const outcome = el("span", { class: "outcome", text: " running…" });
  const li = run.item(seq, event, "Tool ", el("code", { text: data.tool }),
    " with ", el("code", { class: "args", text: compact(data.arguments || {}) }), outcome);
  li.classList.add("tool");
  run.tools.set(data.call_id, outcome);
}

function toolCompleted(conv, seq, event, data) {
  const run = conv.run(event.run_id);
  const ok = data.status === "ok";
  const summary = ok ? summarise(data.result) : `${(data.error || {}).code || "error"}: ${(data.error || {}).message || ""}`;
  const text = ` ${ok ? "✓ done" : "✗ failed"} in ${ms(data.duration_ms)}: ${summary}`;
  const outcome = run.tools.get(data.call_id);
  if (outcome) outcome.textContent = ok ? " → finished" : " → failed";  // details on the line below
  const li = run.item(seq, event, el("code", { text: data.tool }), el("span", { class: ok ? "ok" : "err", text }));
  li.classList.add("tool");
}

function agentCompleted(conv, seq, event, data) {
  const li = agentItem((d) => `finished in ${ms(d.duration_ms)}${d.summary ? `: ${d.summary}` : ""}`)(conv, seq, event, data);
  li.classList.add("ok");
}

function terminal(status) {
  return (conv, seq, event, data, live) => {
    const run = conv.run(event.run_id);
    const final = status || data.status;
    run.item(seq, event, el("strong", { text: STATUS_TEXT[final] || final }),
      data.duration_ms !== undefined ? ` after ${ms(data.duration_ms)}` : "");
    run.finish(final, live);
    for (const draft of run.drafts.values()) draft.node.remove();  // the ending says what counts
    run.drafts.clear();
    if (event.type === "run.completed") run.answer.append(answerView(data, conv.onUploadHint));
    if (event.type === "run.failed") {
      const error = data.error || {};
      run.answer.append(el("div", { class: "msg assistant failed", role: "alert" },
        `The run failed (${error.code || "error"}): ${error.message || ""}`,
        error.retryable ? " You can send the question again." : ""));
    }
    if (event.type === "run.cancelled") {
      run.answer.append(el("div", { class: "msg assistant", text: `Cancelled (${data.cause || "by you"}).` }));
    }
  };
}

function queuedText(d) {
  if (d.reason === "waiting_for_service") {
    return `Queued: waiting for ${(d.waiting_for || []).join(", ") || "a service"} to come back; it starts then`;
  }
  return `Waiting for ${(d.behind || []).length} earlier run(s) to finish`;
}

// The answer as it streams: one draft per streamed message, chunks placed by index (each
// once), only the run's latest message shown. A message superseded by a later attempt of
// its step (the earlier one died mid-stream) is dropped, and its late chunks ignored.
function streamedChunk(conv, seq, event, data) {
  if (conv.superseded.has(data.message_id)) return;
  const run = conv.run(event.run_id);
  let draft = run.drafts.get(data.message_id);
  if (!draft) {
    for (const older of run.drafts.values()) older.node.hidden = true;
    draft = { chunks: new Map(), node: el("div", { class: "msg assistant draft", "data-message": data.message_id }) };
    run.drafts.set(data.message_id, draft);
    run.answer.append(draft.node);
  }
  if (!draft.chunks.has(data.index)) draft.chunks.set(data.index, data.text);
  draft.node.textContent = [...draft.chunks.keys()].sort((a, b) => a - b).map((i) => draft.chunks.get(i)).join("");
}

function superseded(conv, seq, event, data) {
  const run = conv.run(event.run_id);
  for (const id of data.message_ids || []) {
    conv.superseded.add(id);
    const draft = run.drafts.get(id);
    if (draft) draft.node.remove();
    run.drafts.delete(id);
  }
  const latest = [...run.drafts.values()].pop();
  if (latest) latest.node.hidden = false;
  run.item(seq, event, el("span", { class: "agent", text: agentName(event.agent) }), " restarted its answer");
}

const HANDLERS = {
  "message.created": userMessage,
  "run.accepted": (c, s, e) => c.run(e.run_id).item(s, e, "Run accepted"),
  "run.queued": (c, s, e, d) => c.run(e.run_id).item(s, e, queuedText(d)),
  "run.cancel_requested": (c, s, e) => c.run(e.run_id).item(s, e, "Cancelling…"),
  agent_started: agentItem(() => "started"),
  agent_thinking: (c, s, e, d) => agentItem(() => "")(c, s, e, d).append(el("span", { class: "thinking", text: d.text })),
  tool_executing: toolExecuting,
  tool_completed: toolCompleted,
  agent_completed: agentCompleted,
  agent_failed: agentItem((d) => `failed: ${(d.error || {}).message || (d.error || {}).code}`),
  "message.delta": streamedChunk,
  "message.superseded": superseded,
  "run.completed": terminal(null),
  "run.failed": terminal("failed"),
  "run.cancelled": terminal("cancelled"),
};

function answerView(data, onUploadHint) {
  const response = data.response || {};
  const bubble = el("div", { class: "msg assistant", "aria-label": "Answer" });
  const text = el("div", { class: "markdown" });
  text.innerHTML = renderMarkdown(response.text || "");  // escaped first: see markdown.js
  bubble.append(text);
  if (response.report) bubble.append(reportView(response.report));
  if (response.data_request) bubble.append(dataRequestView(response.data_request, onUploadHint));
  return bubble;
}

export function reportView(report) {
  const section = el("section", { class: "report", "aria-label": "Report" }, el("h3", { text: "Report" }));
  const period = report.period || {};
  section.append(el("dl", {},
    el("dt", { text: "Period" }), el("dd", { text: period.start || period.end ? `${day(period.start)} to ${day(period.end)}` : "no data yet" }),
    el("dt", { text: "Total cost" }), el("dd", { class: "total-cost", text: money(report.total_cost_usd) }),
    el("dt", { text: "Requests" }), el("dd", { class: "requests", text: Number(report.requests || 0).toLocaleString("en-US") })));
  if ((report.by_model || []).length) {
    const head = ["Model", "Provider", "Requests", "Cost", "p50 latency", "p95 latency"];
    section.append(el("table", { class: "by-model" },
      el("caption", { class: "sr-only", text: "Cost and latency by model" }),
      el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { scope: "col", class: i > 1 ? "num" : null, text: h })))),
      el("tbody", {}, report.by_model.map((m) => el("tr", {},
        el("td", { text: m.model }), el("td", { text: m.provider }),
        el("td", { class: "num", text: Number(m.requests).toLocaleString("en-US") }), el("td", { class: "num", text: money(m.cost_usd) }),
        el("td", { class: "num", text: ms(m.p50_latency_ms) }), el("td", { class: "num", text: ms(m.p95_latency_ms) }))))));
  }
  const recs = report.recommendations || [];
  if (recs.length) {
    section.append(el("h4", { text: "Recommendations" }), el("ol", { class: "recommendations" }, recs.map((r) =>
      el("li", { class: "rec" }, el("strong", { text: r.title }), " ",
        el("span", { class: "saving", text: `saves about ${money(r.est_monthly_savings_usd)} a month` }),
        el("span", { class: "muted", text: ` (${r.confidence} confidence)` }), el("p", { text: r.rationale })))));
  }
  if ((report.data_gaps || []).length) {
    section.append(el("h4", { text: "Data gaps" }), el("ul", { class: "data-gaps" }, report.data_gaps.map((g) => el("li", { text: g }))));
  }
  return section;
}

function dataRequestView(request, onUploadHint) {
  const period = request.period || {};
  return el("section", { class: "data-request", "aria-label": "Data request" },
    el("h4", { text: "Data needed" }), el("p", { text: request.reason }),
    el("p", {}, el("strong", { text: "Fields: " }), (request.fields || []).join(", ")),
    period.start || period.end ? el("p", {}, el("strong", { text: "Period: " }), `${day(period.start)} to ${day(period.end)}`) : null,
    el("ul", {}, (request.how_to_export || []).map((h) => el("li", {}, el("strong", { text: `${h.provider}: ` }), h.steps))),
    el("p", {}, el("strong", { text: "Formats: " }), (request.formats || []).join(", ")),
    el("button", { type: "button", class: "primary", text: "Upload usage data", onclick: onUploadHint }));
}
