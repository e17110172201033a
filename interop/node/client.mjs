// A wirestream client written elsewhere: Node on the `ws` package.
//
// Runs the interop cases against a demo server started by interop/run.sh,
// each on a fresh connection, and prints `N passed, M failed` as its last
// line (exit 1 if any failed).
//
// usage: node client.mjs URL MAX_FRAME_SIZE BODY_TIMEOUT_MS LIVENESS_MS

import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";

const [URL, MAX_FRAME_SIZE, BODY_TIMEOUT_MS, LIVENESS_MS] = [
  process.argv[2],
  ...process.argv.slice(3, 6).map(Number),
];
// Every wait of a case is bounded by this; a case never hangs the run.
const STEP_MS = 5000;

function check(cond, what) {
  if (!cond) throw new Error(what);
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A connection whose inbound frames are read in order: `recv()` gives the
// next text frame as JSON, or {close: code} once the server closed.
class Conn {
  static async open() {
    const ws = new WebSocket(URL, { perMessageDeflate: false });
    const conn = new Conn(ws);
    await withTimeout(
      new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      }),
      STEP_MS,
      "open",
    );
    return conn;
  }

  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    ws.on("message", (data, isBinary) =>
      this.push(isBinary ? { binary: data } : JSON.parse(data.toString())),
    );
    ws.on("close", (code) => this.push({ close: code === 1005 || code === 1006 ? null : code }));
    ws.on("error", () => {}); // a dropped connection ends in "close"
  }

  push(v) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(v);
    else this.queue.push(v);
  }

  recv() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return withTimeout(new Promise((resolve) => this.waiters.push(resolve)), STEP_MS, "recv");
  }

  send(v) {
    this.ws.send(typeof v === "string" || Buffer.isBuffer(v) ? v : JSON.stringify(v));
  }

  close() {
    this.ws.terminate();
  }
}

const isServerRequest = (v) => typeof v.id === "string" && typeof v.method === "string";
const isClientResponse = (v) => (v.type === "ok" || v.type === "error") && typeof v.id === "string";
const isChunk = (v) => typeof v.id === "string" && v.object === "agent.completion.chunk";

// The client's answer to the demo's tools/list: status 200, as an MCP host.
function answer(request) {
  return {
    id: request.id,
    status: 200,
    headers: { "mcp-session-id": request.headers?.["mcp-session-id"] ?? "" },
    body: { jsonrpc: "2.0", id: 1, result: { tools: [] } },
  };
}

// Reads to the end; answers server requests.
async function stream(conn, onChunk) {
  const chunks = [];
  const others = [];
  for (;;) {
    const v = await conn.recv();
    if ("close" in v) return { chunks, others, code: v.close };
    if (isServerRequest(v)) {
      others.push(v);
      conn.send(answer(v));
    } else if (isChunk(v)) {
      chunks.push(v);
      if (onChunk) onChunk(v);
    } else {
      others.push(v);
    }
  }
}

async function withConn(f) {
  const conn = await Conn.open();
  try {
    return await f(conn);
  } finally {
    conn.close();
  }
}

const cases = [
  ["body -> chunks -> Close(1000)", () => withConn(async (conn) => {
    conn.send({ chunks: 3, interval_ms: 10 });
    const { chunks, code } = await stream(conn);
    check(chunks.length === 3, `3 chunks, got ${chunks.length}`);
    check(new Set(chunks.map((c) => c.id)).size === 1, "one completion id across chunks");
    check(code === 1000, `Close(1000), got ${code}`);
  })],
  ["notify answered ok and 404", () => withConn(async (conn) => {
    const ok = randomUUID();
    const missing = randomUUID();
    let sent = false;
    conn.send({ chunks: 4, interval_ms: 200 });
    const { chunks, others, code } = await stream(conn, (chunk) => {
      if (sent) return;
      sent = true;
      for (const [id, responseId] of [[ok, chunk.id], [missing, "agc-never-emitted"]]) {
        conn.send({ id, type: "agent_completion_notify", response_id: responseId, content: "also check the tests" });
      }
    });
    const replies = Object.fromEntries(others.filter(isClientResponse).map((v) => [v.id, v]));
    check(replies[ok]?.type === "ok", `notify ok, got ${JSON.stringify(replies[ok])}`);
    const bad = replies[missing];
    check(bad?.type === "error" && bad.code === 404, `notify 404, got ${JSON.stringify(bad)}`);
    check(String(bad.message).includes('"agc-never-emitted"'), `404 names the id: ${JSON.stringify(bad)}`);
    check(chunks.length === 4 && code === 1000, `4 chunks then Close(1000), got ${chunks.length}, ${code}`);
  })],
  ["server request answered 200", () => withConn(async (conn) => {
    conn.send({ chunks: 4, interval_ms: 200 });
    const { chunks, others, code } = await stream(conn);
    const requests = others.filter(isServerRequest);
    check(requests.length === 1, `one server request, got ${JSON.stringify(requests)}`);
    const r = requests[0];
    check(r.method === "POST", `POST, got ${r.method}`);
    check(r.headers?.["mcp-session-id"], `an mcp-session-id header: ${JSON.stringify(r)}`);
    check(r.body?.method === "tools/list", `a tools/list body: ${JSON.stringify(r)}`);
    // What the client can see of its answer: the stream goes on to its end.
    check(chunks.length === 4 && code === 1000, `4 chunks then Close(1000), got ${chunks.length}, ${code}`);
  })],
  ["binary body -> 400 + Close(1003)", () => withConn(async (conn) => {
    conn.send(Buffer.from([0, 1, 98, 105, 110]));
    const err = await conn.recv();
    const end = await conn.recv();
    check(err.code === 400, `error frame 400, got ${JSON.stringify(err)}`);
    check(end.close === 1003, `Close(1003), got ${JSON.stringify(end)}`);
  })],
  ["over the size limit -> 413 + Close(1009)", () => withConn(async (conn) => {
    conn.send("x".repeat(MAX_FRAME_SIZE + 1));
    const frames = [];
    let v;
    while (!("close" in (v = await conn.recv()))) frames.push(v);
    check(v.close === 1009, `Close(1009), got ${JSON.stringify(v)}`);
    check(frames.length === 1 && frames[0].code === 413, `a 413 error frame before it: ${JSON.stringify(frames)}`);
  })],
  ["no body -> 408 + Close(1008)", () => withConn(async (conn) => {
    const start = Date.now();
    const err = await conn.recv();
    const end = await conn.recv();
    const took = Date.now() - start;
    check(err.code === 408, `error frame 408, got ${JSON.stringify(err)}`);
    check(end.close === 1008, `Close(1008), got ${JSON.stringify(end)}`);
    check(took >= BODY_TIMEOUT_MS * 0.9, `after the body timeout: ${took} ms`);
  })],
  ["pings answered", () => withConn(async (conn) => {
    const pong = (data) =>
      withTimeout(
        new Promise((resolve) => {
          conn.ws.once("pong", (got) => resolve(got.toString()));
          conn.ws.ping(data);
        }),
        STEP_MS,
        "pong",
      );
    // While the server awaits the body (ignored there), then while streaming.
    check((await pong("before-body")) === "before-body", "pong echoes the ping");
    conn.send({ chunks: 3, interval_ms: 50 });
    check(isChunk(await conn.recv()), "a chunk");
    check((await pong("while-streaming")) === "while-streaming", "pong echoes the ping");
    const { chunks, code } = await stream(conn);
    check(chunks.length === 2 && code === 1000, `the rest then Close(1000), got ${chunks.length}, ${code}`);
  })],
  ["silent peer dropped", () => withConn(async (conn) => {
    // A long stream (10 s); the client then stops reading, so it neither
    // answers the server's pings nor sends anything.
    conn.send({ chunks: 1000, interval_ms: 10 });
    check(isChunk(await conn.recv()), "a chunk");
    conn.ws.pause();
    await sleep(LIVENESS_MS * 3);
    conn.ws.resume();
    // Everything the server wrote before dropping us is buffered: read it;
    // the end must come at once, not after the stream's 10 s.
    const start = Date.now();
    const { chunks, code } = await stream(conn);
    const took = Date.now() - start;
    check(code === 1008 || code === null, `Close(1008) or no close frame, got ${code}`);
    check(chunks.length < 999, `the stream was cut: ${chunks.length + 1} of 1000 chunks`);
    check(took < 2000, `dropped while silent (end seen ${took} ms after resuming)`);
  })],
];

let passed = 0;
let failed = 0;
for (const [name, run] of cases) {
  const start = Date.now();
  try {
    await withTimeout(run(), 30000, name);
    passed += 1;
    console.log(`node: ok    ${name} (${((Date.now() - start) / 1000).toFixed(2)}s)`);
  } catch (e) {
    failed += 1;
    console.log(`node: FAIL  ${name}: ${e.message}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
