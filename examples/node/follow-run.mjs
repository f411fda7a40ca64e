// A tenant's service on the Apex bus, with nats.js and nothing else of Apex:
// it starts a run (apex.api.<tenant>.<user>.message.send), follows the run's thread with a
// JetStream ordered consumer filtered to its own events, disconnects on purpose halfway,
// reconnects and resumes from the last seq it saw, until the run's terminal event.
//
//   APEX_NATS_URL    the nats_url of POST /api/v1/service-accounts
//   APEX_NATS_CREDS  a file holding its creds (the standard .creds text)
//   APEX_TENANT_ID   its tenant_id, APEX_USER_ID its user_id
//   APEX_NATS_CA     the CA of the servers' certificate, for a tls:// URL (optional)
//   APEX_TEXT        the question (optional); APEX_RESUME_AFTER events before the disconnect (default 3)
//
// Prints one JSON line per event ({"seq", "type", "connection"}) and a last summary line;
// exits 0 when the run ended with run.completed. See docs/bus-api.md.

import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { connect, consumerOpts, credsAuthenticator, JSONCodec } from "nats";

const TERMINAL = new Set(["run.completed", "run.failed", "run.cancelled"]);
const STREAM = "APEX_EVT";
const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};

const url = env("APEX_NATS_URL");
const tenant = env("APEX_TENANT_ID");
const user = env("APEX_USER_ID");
const creds = readFileSync(env("APEX_NATS_CREDS"));
const resumeAfter = Number(env("APEX_RESUME_AFTER", "3"));
const jc = JSONCodec();

// Replies and ordered-consumer deliveries must arrive under the account's own inbox
// prefix: it may subscribe there and nowhere else in _INBOX.
async function open() {
  return connect({
    servers: url.split(","),
    authenticator: credsAuthenticator(creds),
    inboxPrefix: `_INBOX.${user}`,
    name: "apex-node-example",
    ...(process.env.APEX_NATS_CA ? { tls: { caFile: process.env.APEX_NATS_CA } } : {}),
  });
}

// The bus API answers a request with the WebSocket's frames: message.accepted, or an
// error frame {type: "error", code, message, retryable}.
async function request(nc, operation, body) {
  const reply = await nc.request(`apex.api.${tenant}.${user}.${operation}`, jc.encode(body), { timeout: 15000 });
  const frame = jc.decode(reply.data);
  if (frame.type === "error") throw new Error(`${operation}: ${frame.code}: ${frame.message}`);
  return frame;
}

// An ordered consumer of the thread's subject from `fromSeq`: named by us, so nats.js
// creates it through the API subject that carries the filter (the only one we may use).
async function follow(nc, threadId, fromSeq) {
  const opts = consumerOpts();
  opts.orderedConsumer();
  opts.bindStream(STREAM);
  opts.consumerName(`node-${randomUUID()}`);
  opts.startSequence(fromSeq);
  return nc.jetstream().subscribe(`apex.evt.${tenant}.${user}.${threadId}`, opts);
}

// Reads events from `sub` until the run's terminal event or `limit` events; returns
// the last event seen.
async function readEvents(sub, runId, connection, seen, limit = Infinity) {
  let count = 0;
  for await (const msg of sub) {
    const event = jc.decode(msg.data);
    const seq = msg.info.streamSequence;
    seen.push(seq);
    console.log(JSON.stringify({ seq, type: event.type, run_id: event.run_id, connection }));
    count += 1;
    if ((TERMINAL.has(event.type) && event.run_id === runId) || count >= limit) {
      return { seq, event };
    }
  }
  throw new Error("the subscription ended before the run did");
}

async function main() {
  const seen = [];
  let nc = await open();
  const accepted = await request(nc, "message.send", {
    client_msg_id: randomUUID(),
    text: env("APEX_TEXT", "Where is my LLM spend going and how do I cut it?"),
  });
  const { thread_id: threadId, run_id: runId } = accepted;

  // the first connection: from the thread's first event, a few events, then a disconnect
  let sub = await follow(nc, threadId, 1);
  let last = await readEvents(sub, runId, 1, seen, resumeAfter);
  await nc.close(); // as a crash or a network cut would

  // a new connection resumes after the last seq it processed: nothing missed, nothing twice
  let resumedAt = null;
  if (!(TERMINAL.has(last.event.type) && last.event.run_id === runId)) {
    resumedAt = last.seq + 1;
    nc = await open();
    sub = await follow(nc, threadId, resumedAt);
    last = await readEvents(sub, runId, 2, seen);
    await nc.close();
  }
  console.log(JSON.stringify({ summary: true, thread_id: threadId, run_id: runId, resumed_at: resumedAt, seqs: seen, terminal: last.event.type }));
  process.exit(last.event.type === "run.completed" ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
