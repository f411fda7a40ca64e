// The chat page: sign in or register, the thread list (new, rename, delete, search), the
// conversation of the open thread streamed over apex.v1, cancel, and usage upload.

import { ApiError, Session } from "./session.js";
import { ApexSocket, MAX_BATCH } from "./socket.js";
import { Conversation, el } from "./runs.js";
import { bindUpload } from "./upload.js";

const $ = (id) => document.getElementById(id);
const session = Session.restore();
const socket = new ApexSocket(session);
const state = { current: null, threads: [], mine: new Set(), renamed: new Map() };
const conversation = new Conversation($("conversation"), {
  onCancel: (runId) => socket.send({ type: "run.cancel", run_id: runId }),
  onUploadHint: () => $("usage-file").focus(),
});

function clientMsgId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));  // works outside secure contexts too
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

function friendly(error) {
  if (error instanceof ApiError) return error.message;
  return "The server could not be reached; check your connection and try again.";
}

// --- signing in ---------------------------------------------------------------------------

function showSignIn(message = "") {
  socket.stop();
  $("app").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("login-email").focus();
}

async function submitAuth(form, action) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  $("signin-error").textContent = "";
  try {
    await action(new FormData(form));
    form.reset();
    startApp();
  } catch (error) {
    $("signin-error").textContent = friendly(error);
  } finally {
    button.disabled = false;
  }
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  submitAuth(e.target, (f) => session.login(f.get("email").trim(), f.get("password")));
});
$("register-form").addEventListener("submit", (e) => {
  e.preventDefault();
  submitAuth(e.target, (f) => session.register(f.get("email").trim(), f.get("password"), f.get("tenant").trim()));
});
$("sign-out").addEventListener("click", async () => {
  await session.logout();
});
session.addEventListener("signedout", (e) => {
  const reason = e.detail && e.detail.reason;
  showSignIn(reason ? "Your session has ended; please sign in again." : "");
});
socket.addEventListener("signedout", (e) => session.end(e.detail.reason || "session_ended"));

function startApp() {
  $("signin").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  $("who-email").textContent = session.email || "";
  $("dashboard-link").hidden = !(session.isAdmin || session.isOperator);
  socket.connect();
  loadThreads();
  const fromHash = location.hash.slice(1);
  if (/^thr_[0-9A-Za-z]+$/.test(fromHash)) openThread(fromHash);
  $("composer-text").focus();
}

// --- the connection -----------------------------------------------------------------------

socket.addEventListener("state", (e) => {
  const { state: s, detail } = e.detail;
  $("connection").dataset.state = s;
  $("connection").textContent = detail || s;
});
socket.addEventListener("ready", () => {
  notice("");
  loadThreads();  // what changed while we were away (a new thread, a rename elsewhere)
});
socket.addEventListener("accepted", (e) => {
  const { frame } = e.detail;
  if (!state.mine.has(frame.client_msg_id)) return;
  if (!state.current) {
    state.current = frame.thread_id;
    history.replaceState(null, "", `#${frame.thread_id}`);
    refreshThreadsSoon();
  }
});
socket.addEventListener("event", (e) => {
  const { frame, live } = e.detail;
  if (frame.thread_id !== state.current) return;
  const event = frame.event;
  if (event.type === "thread.renamed") setTitle(event.data.title);
  if (event.type === "thread.deleted") {
    notice("This conversation was deleted.");
    newChat();
    return;
  }
  if (event.type === "message.created" && $("thread-title").textContent === "New chat") {
    setTitle(event.data.title || event.data.content.slice(0, 60));
  }
  const box = $("conversation");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  conversation.apply(frame.seq, event, live);
  if (atBottom || live) box.scrollTop = box.scrollHeight;
  if (event.type.startsWith("run.") && ["run.completed", "run.failed", "run.cancelled"].includes(event.type)) {
    refreshThreadsSoon();
  }
});
socket.addEventListener("reset", (e) => {
  if (e.detail.thread_id === state.current) conversation.clear();
});
socket.addEventListener("error", (e) => {
  const { frame } = e.detail;
  notice(`${frame.message} (${frame.code})`);
});

// --- threads ------------------------------------------------------------------------------

function setTitle(title) {
  $("thread-title").textContent = title || "New chat";
  document.title = title ? `${title} · Apex` : "Apex";
}

let searchTimer = null;
let refreshTimer = null;
let listRetries = 0;

function refreshThreadsSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(loadThreads, 800);
}

async function loadThreads() {
  const search = $("thread-search").value.trim();
  try {
    const page = await session.api("GET", `/api/v1/threads?limit=100${search ? `&search=${encodeURIComponent(search)}` : ""}`);
    state.threads = page.threads;
    renderThreads();
    // A thread that is not in the list yet is still being projected: look again shortly.
    const missing = state.current && !search && !state.threads.some((t) => t.id === state.current);
    listRetries = missing ? listRetries + 1 : 0;
    if (missing && listRetries <= 10) refreshThreadsSoon();
  } catch (error) {
    notice(`Conversations could not be loaded: ${friendly(error)}`);
  }
}

function renderThreads() {
  // A rename shows at once; the server's list catches up when it has projected it.
  for (const thread of state.threads) {
    const title = state.renamed.get(thread.id);
    if (title === thread.title) state.renamed.delete(thread.id);
    else if (title) thread.title = title;
  }
  const list = $("threads");
  list.replaceChildren(...state.threads.map(threadItem));
  $("threads-empty").hidden = state.threads.length > 0;
  const current = state.threads.find((t) => t.id === state.current);
  if (current) setTitle(current.title);
}

function threadItem(thread) {
  const li = el("li", { "data-thread": thread.id, "aria-current": thread.id === state.current ? "true" : null });
  li.append(
    el("button", { type: "button", class: "open", text: thread.title, title: thread.title, onclick: () => openThread(thread.id) }),
    el("span", { class: "tools" },
      el("button", { type: "button", "aria-label": `Rename ${thread.title}`, text: "Rename", onclick: () => renameForm(li, thread) }),
      el("button", { type: "button", "aria-label": `Delete ${thread.title}`, text: "Delete", onclick: () => confirmDelete(li, thread) })),
  );
  return li;
}

function renameForm(li, thread) {
  const input = el("input", { "aria-label": "New title", value: thread.title, maxlength: "200" });
  const form = el("form", {}, input, el("button", { type: "submit", text: "Save" }),
    el("button", { type: "button", text: "Cancel", onclick: renderThreads }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const title = input.value.trim();
    if (!title) return;
    try {
      await session.api("PATCH", `/api/v1/threads/${thread.id}`, { json: { title } });
      thread.title = title;
      state.renamed.set(thread.id, title);
      if (thread.id === state.current) setTitle(title);
      renderThreads();
      refreshThreadsSoon();
    } catch (error) {
      notice(`Rename failed: ${friendly(error)}`);
    }
  });
  form.addEventListener("keydown", (e) => { if (e.key === "Escape") renderThreads(); });
  li.replaceChildren(form);
  input.focus();
  input.select();
}

function confirmDelete(li, thread) {
  const yes = el("button", { type: "button", class: "danger", text: "Delete", onclick: async () => {
    try {
      await session.api("DELETE", `/api/v1/threads/${thread.id}`);
      state.threads = state.threads.filter((t) => t.id !== thread.id);
      if (thread.id === state.current) newChat();
      renderThreads();
      refreshThreadsSoon();
    } catch (error) {
      notice(`Delete failed: ${friendly(error)}`);
    }
  } });
  li.replaceChildren(el("span", { class: "confirm", text: `Delete “${thread.title}”?` }), yes,
    el("button", { type: "button", text: "Keep", onclick: renderThreads }));
  yes.focus();
}

function openThread(threadId) {
  if (state.current === threadId) return;
  if (state.current) socket.unfollow(state.current);
  state.current = threadId;
  history.replaceState(null, "", `#${threadId}`);
  conversation.clear();
  notice("");
  const known = state.threads.find((t) => t.id === threadId);
  setTitle(known ? known.title : "…");
  socket.follow(threadId);
  renderThreads();
  $("composer-text").focus();
}

function newChat() {
  if (state.current) socket.unfollow(state.current);
  state.current = null;
  history.replaceState(null, "", location.pathname);
  conversation.clear();
  $("conversation").append(welcome);
  setTitle(null);
  renderThreads();
  $("composer-text").focus();
}

const welcome = $("welcome");
$("new-chat").addEventListener("click", newChat);
$("thread-search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(loadThreads, 250);
});

// --- sending ------------------------------------------------------------------------------

function send(text) {
  const clean = text.trim();
  if (!clean) return;
  welcome.remove();
  const id = clientMsgId();
  state.mine.add(id);
  const frame = { type: "message.send", client_msg_id: id, text: clean, max_batch: MAX_BATCH };
  if (state.current) frame.thread_id = state.current;
  conversation.showPending(id, clean);
  socket.send(frame);
  $("conversation").scrollTop = $("conversation").scrollHeight;
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  send($("composer-text").value);
  $("composer-text").value = "";
});
$("composer-text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
for (const button of document.querySelectorAll(".suggestion")) {
  button.addEventListener("click", () => send(button.textContent));
}

bindUpload(session, $("upload-form"), $("usage-file"), $("upload-result"));

if (session.signedIn) startApp();
else showSignIn();
