// The apex.v1 WebSocket for the page: connects with the token as a subprotocol, keeps a
// visible state, reconnects with backoff and full jitter (backoff.js), and resumes every thread it follows right after
// the last seq it saw (thread.subscribe after_seq + epoch), so a dropped connection loses
// nothing and shows nothing twice. Events are acked (cumulative) shortly after arrival; an
// "events" frame (several events of a thread, asked for with max_batch) is taken event by event.
//
// Events emitted: "state" {state, detail}, "ready" {frame}, "event" {frame, live},
// "accepted" {frame}, "subscribed" {frame}, "reset" {thread_id}, "error" {frame},
// "refreshed" {frame}, "signedout" {reason}.

import { reconnectDelay } from "./backoff.js";

const QUEUED_TYPES = new Set(["message.send", "run.cancel"]);
// a replay or a burst of a thread's events may come as one "events" frame of up to this many
export const MAX_BATCH = 100;

export class ApexSocket extends EventTarget {
  constructor(session) {
    super();
    this.session = session;
    this.ws = null;
    this.state = "offline";
    this.epoch = null;
    this.lastSeq = new Map();   // thread_id -> last seq seen
    this.heads = new Map();     // thread_id -> head_seq of the current replay
    this.followed = new Set();  // threads to (re)subscribe on every connection
    this.outbox = [];
    this.attempt = 0;
    this._timers = { retry: null, ping: null, acks: new Map() };
    this._stopped = false;
    // A refreshed access token goes to the open socket at once (session.refresh): the
    // gateway closes a socket whose token expires (4401 token_expired) otherwise.
    session.addEventListener("tokens", () => this._refreshInBand());
    window.addEventListener("online", () => this.reconnectNow());
    // The system says the network is gone: an open socket would only notice much later.
    window.addEventListener("offline", () => this._drop("No network; waiting for it to come back"));
  }

  _drop(why) {
    if (this._stopped || !this.ws) return;
    const ws = this.ws;
    this.ws = null;
    clearInterval(this._timers.ping);
    ws.onclose = null;
    ws.close(4000, "client_offline");
    this._retry(reconnectDelay(this.attempt), why);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, detail = "") {
    this.state = state;
    this._emit("state", { state, detail });
  }

  connect() {
    this._stopped = false;
    clearTimeout(this._timers.retry);
    if (!this.session.access) return;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    this._setState(this.attempt ? "reconnecting" : "connecting", "Connecting…");
    const ws = new WebSocket(url, ["apex.v1", `apex.bearer.${this.session.access}`]);
    this.ws = ws;
    ws.onmessage = (message) => {
      this.lastFrameAt = Date.now();
      this._receive(message.data);
    };
    ws.onclose = (close) => this._closed(ws, close);
  }

  stop() {
    this._stopped = true;
    clearTimeout(this._timers.retry);
    clearInterval(this._timers.ping);
    if (this.ws) this.ws.close(1000, "bye");
    this.ws = null;
    this._setState("offline", "Signed out");
  }

  reconnectNow() {
    if (this._stopped || this.state === "open") return;
    this.attempt = Math.max(this.attempt, 1);
    this.connect();
  }

  get isOpen() {
    return this.state === "open" && this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  send(frame) {
    if (this.isOpen) {
      this.ws.send(JSON.stringify(frame));
    } else if (QUEUED_TYPES.has(frame.type)) {
      this.outbox.push(frame);  // same client_msg_id on resend: never a second run
    }
  }

  _refreshInBand() {
    if (this.isOpen && this.session.access) this.send({ type: "session.refresh", token: this.session.access });
  }

  follow(threadId, { subscribe = true } = {}) {
    this.followed.add(threadId);
    if (!this.lastSeq.has(threadId)) this.lastSeq.set(threadId, 0);
    if (subscribe) this._subscribe(threadId);
  }

  unfollow(threadId) {
    this.followed.delete(threadId);
    this.lastSeq.delete(threadId);
    if (this.isOpen) this.send({ type: "thread.unsubscribe", thread_id: threadId });
  }

  _subscribe(threadId) {
    const frame = {
      type: "thread.subscribe", thread_id: threadId, after_seq: this.lastSeq.get(threadId) || 0, max_batch: MAX_BATCH,
    };
    if (this.epoch) frame.epoch = this.epoch;
    this.send(frame);
  }

  _receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (_error) {
      return;
    }
    switch (frame.type) {
      case "session.ready": return this._ready(frame);
      case "event": return this._event(frame);
      case "events": return frame.events.forEach((each) => this._event(each));
      case "thread.subscribed":
        this.heads.set(frame.thread_id, frame.head_seq);
        return this._emit("subscribed", { frame });
      case "message.accepted":
        this.follow(frame.thread_id, { subscribe: false });  // the server subscribed us already
        return this._emit("accepted", { frame });
      case "session.refreshed": return this._emit("refreshed", { frame });
      case "error": return this._error(frame);
      default: return undefined;
    }
  }

  _ready(frame) {
    if (this.epoch && frame.epoch !== this.epoch) {
      // Another incarnation of the event stream: our seqs mean nothing there.
      for (const threadId of this.followed) {
        this.lastSeq.set(threadId, 0);
        this._emit("reset", { thread_id: threadId });
      }
    }
    this.epoch = frame.epoch;
    this.attempt = 0;
    this._setState("open", "Connected");
    this._emit("ready", { frame });
    for (const threadId of this.followed) this._subscribe(threadId);
    const queued = this.outbox.splice(0);
    for (const queuedFrame of queued) this.send(queuedFrame);
    clearInterval(this._timers.ping);
    const every = Math.max(2000, Math.floor((frame.heartbeat_ms || 20000) / 2));
    this.lastFrameAt = Date.now();
    this._timers.ping = setInterval(() => {
      // No frame (not even a pong) for a long while: the connection is dead; start over.
      if (Date.now() - this.lastFrameAt > every * 2.5) return this._drop("Connection lost; reconnecting…");
      return this.send({ type: "ping" });
    }, every);
  }

  _event(frame) {
    const seen = this.lastSeq.get(frame.thread_id);
    if (seen === undefined || frame.seq <= seen) return;  // not followed, or a duplicate
    this.lastSeq.set(frame.thread_id, frame.seq);
    const live = frame.seq > (this.heads.get(frame.thread_id) || 0);
    this._emit("event", { frame, live });
    this._ackSoon(frame.thread_id);
  }

  _ackSoon(threadId) {
    if (this._timers.acks.has(threadId)) return;
    this._timers.acks.set(threadId, setTimeout(() => {
      this._timers.acks.delete(threadId);
      const seq = this.lastSeq.get(threadId);
      if (seq && this.followed.has(threadId)) this.send({ type: "event.ack", thread_id: threadId, seq });
    }, 150));
  }

  _error(frame) {
    if (frame.code === "resync_required" && frame.thread_id && this.followed.has(frame.thread_id)) {
      this._subscribe(frame.thread_id);  // we hold everything up to our last seq
      return;
    }
    this._emit("error", { frame });
  }

  async _closed(ws, close) {
    if (ws !== this.ws) return;
    clearInterval(this._timers.ping);
    this.ws = null;
    if (this._stopped) return;
    if (close.code === 4401) {
      if (close.reason === "token_expired" || close.reason === "token_invalid") {
        try {
          await this.session.refresh();
          this.attempt += 1;
          return this.connect();
        } catch (_error) {
          // the refresh token was refused too: fall through to signed out
        }
      }
      this._setState("signed_out", "Signed out");
      return this._emit("signedout", { reason: close.reason });
    }
    if (close.code === 4403) return this._setState("refused", `Refused: ${close.reason || "forbidden"}`);
    // 1012 (a gateway draining) included: the whole pod's clients must not come back at once
    this._retry(reconnectDelay(this.attempt));
  }

  _retry(wait, why = null) {
    clearTimeout(this._timers.retry);
    if (navigator.onLine === false) {
      // Nothing to try until the system has a network again ("online" reconnects at once).
      this._setState("reconnecting", "No network; waiting for it to come back");
      return;
    }
    this.attempt += 1;
    this._setState("reconnecting", why || `Reconnecting in ${Math.max(1, Math.round(wait / 1000))} s…`);
    clearTimeout(this._timers.retry);
    this._timers.retry = setTimeout(() => this.connect(), wait);
  }
}
