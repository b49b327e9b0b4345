// The one load generator of the benchmark, used the same way for both servers.
//
// Real socket.io-client 4 sockets (websocket transport) on loopback. Modes:
//
//   tokens  (python only) W concurrent HTTP clients POST /api/v1/user/sockettoken for
//           --duration seconds: requests/s and latency p50/p99.
//   fanout  connect --clients sockets (python: socket token + handshake for each, W at a
//           time; node: handshake only), then ask the server to emit --count messages
//           through POST /bench/broadcast (emitToEveryone) or /bench/users (emitToUsers to
//           --fraction of the clients' users) and count what every socket receives:
//           deliveries/s, end-to-end latency (receive time minus the send time `t` in the
//           payload), loss, duplicates, reordering (per-socket sequence check). A checked
//           warm-up burst goes first (--warmup messages, default --count); then --bursts
//           bursts, each checked, each started when the rest of the machine is quiet
//           (--quiet-cores, waiting at most --quiet-wait s); the run reports the median
//           burst figures and every burst. With --target channels, every socket first
//           subscribes to one of --channels channels (`room:bench`, or `room:bench-<i>`
//           for socket i mod --channels), W at a time, each waiting for its ack; then
//           POST /bench/channel emits each message to every channel (emitToChannel).
//   idle    connect --clients sockets and hold them: server RSS per idle connection
//           (the server reads its own /proc/self/status before and after).
//
// --server python | node | node-token. node-token is node_server.js with MONGODB_URI:
// each user gets a JWT from its /bench/login, and a socket connects the python way
// (POST /api/v1/user/sockettoken, then the handshake with that token).
//
// Usage: node loadgen.mjs --mode fanout --url http://127.0.0.1:PORT --server python \
//          --clients 1000 --count 50 [--target users --fraction 0.1 | --target channels
//          --channels 100] ...
// Prints one JSON object on stdout; progress goes to stderr. Every wait is bounded.

import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import crypto from "node:crypto";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { io } from "socket.io-client";

const { values: opt } = parseArgs({
  options: {
    mode: { type: "string", default: "fanout" },
    url: { type: "string" },
    server: { type: "string", default: "python" },
    clients: { type: "string", default: "100" },
    count: { type: "string", default: "200" },
    size: { type: "string", default: "120" },
    target: { type: "string", default: "everyone" },
    fraction: { type: "string", default: "0.1" },
    channels: { type: "string", default: "1" },
    users: { type: "string" },
    concurrency: { type: "string", default: "16" },
    duration: { type: "string", default: "5" },
    settle: { type: "string", default: "1000" },
    timeout: { type: "string", default: "120" },
    "idle-timeout": { type: "string", default: "15" },
    warmup: { type: "string" },
    bursts: { type: "string", default: "3" },
    "quiet-cores": { type: "string", default: "0.3" },
    "quiet-wait": { type: "string", default: "3" },
    run: { type: "string" },
    pre: { type: "string", default: "10" },
  },
});

if (!opt.url) {
  console.error("usage: node loadgen.mjs --mode tokens|fanout|idle --url http://127.0.0.1:PORT --server python|node ...");
  process.exit(2);
}
const URL_ = opt.url.replace(/\/$/, "");
const { hostname: HOST, port: PORT } = new URL(URL_);
const SERVER = opt.server;
// Whether a socket connects with a socket token (a request, then the handshake with it).
const TOKENS = SERVER !== "node";
const CLIENTS = Number(opt.clients);
const COUNT = Number(opt.count);
const SIZE = Number(opt.size);
const CONCURRENCY = Number(opt.concurrency);
const RUN = opt.run || crypto.randomBytes(4).toString("hex");
const SETTLE_MS = Number(opt.settle);
const CHANNEL = "bench";

const nowMs = () => performance.timeOrigin + performance.now();
const log = (...parts) => console.error(`[loadgen ${SERVER} ${opt.mode}]`, ...parts);

// ---------------------------------------------------------------- statistics

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

function summary(values) {
  const sorted = Float64Array.from(values).sort();
  let total = 0;
  for (const v of sorted) total += v;
  const round = (v) => (v === null ? null : Math.round(v * 1000) / 1000);
  return {
    n: sorted.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.length ? sorted[sorted.length - 1] : null),
    mean: round(sorted.length ? total / sorted.length : null),
  };
}

function cpuSeconds() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

// ---------------------------------------------------------------- HTTP

const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(CONCURRENCY, 4) });

function request(method, path, body, bearer) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const headers = { Accept: "application/json" };
    if (payload) {
      headers["Content-Type"] = "application/json";
      headers["Content-Length"] = payload.length;
    }
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    const started = nowMs();
    const req = http.request({ host: HOST, port: PORT, method, path, headers, agent }, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch {
          json = { raw: text.slice(0, 200) };
        }
        resolve({ status: res.statusCode, json, ms: nowMs() - started });
      });
      res.on("error", reject);
    });
    req.setTimeout(60000, () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.on("error", reject);
    if (payload) req.write(payload);
    req.end();
  });
}

async function expectOk(method, path, body, bearer) {
  const res = await request(method, path, body, bearer);
  if (res.status < 200 || res.status >= 300) {
    throw new Error(`${method} ${path} -> ${res.status} ${JSON.stringify(res.json)}`);
  }
  return res;
}

async function stats(gc = false) {
  return (await expectOk("GET", `/bench/stats${gc ? "?gc=1" : ""}`)).json;
}

// Run fn(i) for i in [0, n) with at most `width` at a time.
async function pool(n, width, fn) {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
}

// ---------------------------------------------------------------- users and sockets

// python: sign up and log in `n` users over the app's REST API; node: ids only. The
// benchmark measures sockets, not accounts: run.py starts the app with
// REQUIRE_VERIFIED_EMAIL=false, so a user logs in without following its verification link.
async function makeUsers(n) {
  const started = nowMs();
  const users = new Array(n);
  if (SERVER === "node") {
    for (let i = 0; i < n; i += 1) users[i] = { id: crypto.randomBytes(12).toString("hex") };
  } else if (SERVER === "node-token") {
    await pool(n, CONCURRENCY, async (i) => {
      const id = crypto.randomBytes(12).toString("hex");
      users[i] = { id, jwt: (await expectOk("POST", "/bench/login", { user: id })).json.token };
    });
  } else {
    await pool(n, CONCURRENCY, async (i) => {
      const username = `b${RUN}u${i}`;
      const password = `pw-${RUN}-${i}-benchmark`;
      const signup = await expectOk("POST", "/api/v1/user/signup", {
        email: `${username}@bench.example.com`,
        password,
        username,
      });
      const login = await expectOk("POST", "/api/v1/user/login", { username, password });
      users[i] = { id: signup.json.user._id, jwt: login.json.token };
    });
  }
  return { users, seconds: (nowMs() - started) / 1000 };
}

async function socketToken(user) {
  return (await expectOk("POST", "/api/v1/user/sockettoken", undefined, user.jwt)).json.token;
}

// A client: one socket plus what it has received.
function makeClient(index, user) {
  return {
    index,
    user,
    socket: null,
    targeted: true,
    seen: null,
    unique: 0,
    duplicates: 0,
    reordered: 0,
    maxSeq: -1,
    unexpected: 0,
  };
}

function openSocket(client, auth, onMessage) {
  return new Promise((resolve, reject) => {
    const socket = io(URL_, {
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: 30000,
      auth,
    });
    client.socket = socket;
    // With recovery on, the app's message client adds a trailing {position} argument.
    socket.on(CHANNEL, (msg, meta) => onMessage(client, msg, meta));
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (error) => {
      socket.close();
      reject(new Error(`connect_error: ${error.message}`));
    });
  });
}

// Machine-wide busy CPU (in cores) from /proc/stat, to tell a disturbed run. The first
// line sums every CPU; the cpuN lines count them. (Not os.availableParallelism(): it
// counts the CPUs this process may run on, 1 when run.py pins it, which halved the
// machine's busy cores on 2 and hid every other process until 2026-12-07.)
function cpuTimes() {
  try {
    const lines = fs.readFileSync("/proc/stat", "utf8").split("\n");
    const v = lines[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = v[3] + (v[4] || 0);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const cores = lines.filter((line) => /^cpu\d+ /.test(line)).length || os.cpus().length;
    return { idle, total, cores };
  } catch {
    return null;
  }
}

function machineBusyCores(a, b, seconds) {
  if (!a || !b || b.total === a.total || !(seconds > 0)) return null;
  const busy = (b.total - a.total - (b.idle - a.idle)) / (b.total - a.total);
  return busy * b.cores;
}

// CPU over a window: the server's (its /bench/stats), this process's and the machine's.
// "other" is what the rest of the machine used: a high share means a disturbed window.
async function openWindow() {
  const server = await stats(false);
  return { server, machine: cpuTimes(), own: cpuSeconds() };
}

async function closeWindow(w, after = null) {
  const server = after || (await stats(false));
  const machine = cpuTimes();
  const own = cpuSeconds();
  const seconds = (server.time_ms - w.server.time_ms) / 1000;
  const serverCpu = server.cpu_s - w.server.cpu_s;
  const serverShare = serverCpu / seconds;
  const ownShare = (own - w.own) / seconds;
  const busy = machineBusyCores(w.machine, machine, seconds);
  return {
    server_cpu_s: round3(serverCpu),
    loadgen_cpu_s: round3(own - w.own),
    server_cpu_share: round3(serverShare),
    loadgen_cpu_share: round3(ownShare),
    other_cpu_share: busy === null ? null : round3(Math.max(0, busy - serverShare - ownShare)),
  };
}

// Before a short measurement: wait (at most --quiet-wait s) until the rest of the machine
// uses less than --quiet-cores, so another program's burst of work does not land in it.
async function waitQuiet() {
  const started = nowMs();
  const limit = Number(opt["quiet-wait"]) * 1000;
  let busy = null;
  for (;;) {
    const a = cpuTimes();
    await sleep(250);
    busy = machineBusyCores(a, cpuTimes(), 0.25);
    if (busy === null || busy < Number(opt["quiet-cores"]) || nowMs() - started >= limit) break;
  }
  return { quiet_wait_s: round3((nowMs() - started) / 1000), busy_cores_before: round3(busy) };
}

// Connect every client, W at a time (python: a socket token, then the handshake).
async function connectAll(clients, onMessage) {
  const total = [];
  const tokenMs = [];
  const handshakeMs = [];
  let failures = 0;
  let firstError = null;
  const window = await openWindow();
  log(`connecting ${clients.length}`); // instructions.py starts counting here
  const started = nowMs();
  await pool(clients.length, CONCURRENCY, async (i) => {
    const client = clients[i];
    const t0 = nowMs();
    try {
      const auth =
        TOKENS ? { token: await socketToken(client.user) } : { user: client.user.id };
      const t1 = nowMs();
      await openSocket(client, auth, onMessage);
      const t2 = nowMs();
      if (TOKENS) tokenMs.push(t1 - t0);
      handshakeMs.push(t2 - t1);
      total.push(t2 - t0);
    } catch (error) {
      failures += 1;
      firstError = firstError || String(error.message || error);
    }
  });
  const seconds = (nowMs() - started) / 1000;
  return {
    connections: total.length,
    failures,
    first_error: firstError,
    concurrency: CONCURRENCY,
    includes_token: TOKENS,
    seconds: round3(seconds),
    per_s: round3(total.length / seconds),
    latency_ms: summary(total),
    token_ms: tokenMs.length ? summary(tokenMs) : null,
    handshake_ms: summary(handshakeMs),
    ...(await closeWindow(window)),
  };
}

// Subscribe every client to its channel (client.channel), W at a time, each waiting for
// its ack ({ok: true}). The python app's `room:` channels keep presence: a user's first
// subscription is announced (`join`) to the channel's other subscribers, ~S²/2 events
// for a channel of S. They are counted here, and the subscription phase ends once they
// have stopped arriving (0.5 s without one, at most --idle-timeout s), so none lands in
// a measured burst.
async function subscribeAll(clients) {
  const ackMs = [];
  let failures = 0;
  let firstError = null;
  let presenceEvents = 0;
  const window = await openWindow();
  const started = nowMs();
  for (const client of clients) {
    client.socket.on("join", () => {
      presenceEvents += 1;
    });
  }
  await pool(clients.length, CONCURRENCY, async (i) => {
    const client = clients[i];
    const t0 = nowMs();
    try {
      const ack = await client.socket.timeout(30000).emitWithAck("subscribe", { channel: client.channel });
      if (!ack || ack.ok !== true) throw new Error(`subscribe ${client.channel}: ${JSON.stringify(ack)}`);
      ackMs.push(nowMs() - t0);
    } catch (error) {
      failures += 1;
      firstError = firstError || String(error.message || error);
    }
  });
  const seconds = (nowMs() - started) / 1000;
  const drainLimit = nowMs() + Number(opt["idle-timeout"]) * 1000;
  let last = -1;
  while (presenceEvents !== last && nowMs() < drainLimit) {
    last = presenceEvents;
    await sleep(500);
  }
  return {
    subscriptions: ackMs.length,
    failures,
    first_error: firstError,
    concurrency: CONCURRENCY,
    seconds: round3(seconds),
    per_s: round3(ackMs.length / seconds),
    ack_ms: summary(ackMs),
    presence_events: presenceEvents,
    drained_s: round3((nowMs() - started) / 1000 - seconds),
    ...(await closeWindow(window)),
  };
}

async function closeAll(clients) {
  for (const client of clients) if (client.socket) client.socket.close();
  await sleep(200);
}

function round3(v) {
  return v === null || v === undefined || Number.isNaN(v) ? null : Math.round(v * 1000) / 1000;
}

function usersFor(users, n) {
  return Array.from({ length: n }, (_, i) => users[i % users.length]);
}

function memoryOf(before, after, sockets) {
  const delta = after.rss_kb - before.rss_kb;
  return {
    rss_before_kb: before.rss_kb,
    rss_after_kb: after.rss_kb,
    sockets_on_server: after.sockets,
    kb_per_connection: round3(delta / sockets),
  };
}

// ---------------------------------------------------------------- modes

async function modeTokens() {
  if (SERVER !== "python") throw new Error("tokens mode needs the python server");
  const { users, seconds: usersSeconds } = await makeUsers(CONCURRENCY);
  // Warm-up (not counted): connections opened, handlers and queries warm.
  await pool(CONCURRENCY * 20, CONCURRENCY, (i) => socketToken(users[i % CONCURRENCY]));
  const latencies = [];
  let errors = 0;
  const duration = Number(opt.duration) * 1000;
  const quiet = await waitQuiet();
  const window = await openWindow();
  const started = nowMs();
  const deadline = started + duration;
  await Promise.all(
    users.map(async (user) => {
      while (nowMs() < deadline) {
        const res = await request("POST", "/api/v1/user/sockettoken", undefined, user.jwt);
        if (res.status === 200) latencies.push(res.ms);
        else errors += 1;
      }
    }),
  );
  const seconds = (nowMs() - started) / 1000;
  return {
    mode: "tokens",
    server: SERVER,
    concurrency: CONCURRENCY,
    users_setup_s: round3(usersSeconds),
    requests: latencies.length,
    errors,
    seconds: round3(seconds),
    per_s: round3(latencies.length / seconds),
    latency_ms: summary(latencies),
    ...quiet,
    ...(await closeWindow(window)),
  };
}

async function modeIdle() {
  const userCount = Number(opt.users || CLIENTS);
  const { users, seconds: usersSeconds } = await makeUsers(userCount);
  const clients = usersFor(users, CLIENTS).map((user, i) => makeClient(i, user));
  await sleep(SETTLE_MS);
  const before = await stats(true);
  const connect = await connectAll(clients, () => {});
  log(`connected ${connect.connections}/${CLIENTS} in ${connect.seconds}s`);
  await sleep(Math.max(SETTLE_MS, 2000));
  const after = await stats(true);
  await closeAll(clients);
  return {
    mode: "idle",
    server: SERVER,
    clients: CLIENTS,
    users: userCount,
    users_setup_s: round3(usersSeconds),
    connect,
    memory: memoryOf(before, after, connect.connections),
  };
}

function median(values) {
  const v = values.filter((x) => typeof x === "number" && !Number.isNaN(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

async function modeFanout() {
  const target = opt.target;
  if (!["everyone", "users", "channels"].includes(target)) {
    throw new Error("--target is everyone, users or channels");
  }
  const userCount = Number(opt.users || CLIENTS);
  const bursts = Math.max(1, Number(opt.bursts));
  const { users, seconds: usersSeconds } = await makeUsers(userCount);
  const clients = usersFor(users, CLIENTS).map((user, i) => makeClient(i, user));

  // Who must receive: everyone, or every socket of the first fraction of the users.
  let targetIds = null;
  if (target === "users") {
    const n = Math.max(1, Math.round(userCount * Number(opt.fraction)));
    targetIds = users.slice(0, n).map((u) => u.id);
    const wanted = new Set(targetIds);
    for (const c of clients) c.targeted = wanted.has(c.user.id);
  }
  // Channels: socket i subscribes to channel i mod N (N = 1: `room:bench`, every socket).
  let channelNames = null;
  if (target === "channels") {
    const n = Math.max(1, Math.min(CLIENTS, Number(opt.channels)));
    channelNames = n === 1 ? ["room:bench"] : Array.from({ length: n }, (_, i) => `room:bench-${i}`);
    for (const c of clients) c.channel = channelNames[c.index % n];
  }
  const targeted = clients.filter((c) => c.targeted);
  const expected = targeted.length * COUNT;
  const latencies = new Float64Array(expected);

  // The burst being received. Messages of a warm-up or of an earlier burst are counted
  // apart (`late`); anything else unknown is a stray.
  let burst = null;
  const known = new Set();
  let stray = 0;

  const newBurst = (runId, count, warm) => {
    for (const c of clients) {
      c.seen = c.targeted ? new Uint8Array(count) : null;
      c.unique = 0;
      c.duplicates = 0;
      c.reordered = 0;
      c.maxSeq = -1;
      c.unexpected = 0;
    }
    known.add(runId);
    let finish = null;
    const finished = new Promise((resolve) => {
      finish = resolve;
    });
    return {
      runId,
      count,
      warm,
      expected: targeted.length * count,
      delivered: 0,
      late: 0,
      malformed: 0,
      withPosition: 0,
      firstSend: Infinity,
      lastSend: -Infinity,
      lastRecv: -Infinity,
      finish,
      finished,
    };
  };

  const onMessage = (client, msg, meta) => {
    const now = nowMs();
    const b = burst;
    if (!msg || !b || msg.run !== b.runId) {
      if (msg && known.has(msg.run)) {
        if (b) b.late += 1;
      } else {
        stray += 1;
      }
      return;
    }
    // Counted only: it tells whether the server ran with recovery (every message then
    // carries a position) without changing what is measured.
    if (meta && typeof meta.position === "string") b.withPosition += 1;
    if (!client.targeted) {
      client.unexpected += 1;
      return;
    }
    const seq = msg.seq;
    if (!Number.isInteger(seq) || seq < 0 || seq >= b.count || typeof msg.t !== "number") {
      b.malformed += 1;
      return;
    }
    if (client.seen[seq]) {
      client.duplicates += 1;
      return;
    }
    client.seen[seq] = 1;
    client.unique += 1;
    if (seq < client.maxSeq) client.reordered += 1;
    else client.maxSeq = seq;
    if (!b.warm) latencies[b.delivered] = now - msg.t;
    b.delivered += 1;
    if (msg.t < b.firstSend) b.firstSend = msg.t;
    if (msg.t > b.lastSend) b.lastSend = msg.t;
    b.lastRecv = now;
    if (b.delivered === b.expected) b.finish();
  };

  const connect = await connectAll(clients, onMessage);
  log(`connected ${connect.connections}/${CLIENTS} in ${connect.seconds}s`);
  if (connect.failures) throw new Error(`${connect.failures} connections failed: ${connect.first_error}`);
  const subscribe = channelNames ? await subscribeAll(clients) : null;
  if (subscribe) {
    log(
      `subscribed ${subscribe.subscriptions}/${CLIENTS} to ${channelNames.length} channel(s) in ` +
        `${subscribe.seconds}s, ${subscribe.presence_events} presence events`,
    );
    if (subscribe.failures) {
      throw new Error(`${subscribe.failures} subscriptions failed: ${subscribe.first_error}`);
    }
  }
  await sleep(SETTLE_MS);

  const path = { everyone: "/bench/broadcast", users: "/bench/users", channels: "/bench/channel" }[target];
  const send = (runId, count) => {
    const body = { count, size: SIZE, run: runId };
    if (targetIds) body.users = targetIds;
    if (channelNames) body.channels = channelNames;
    return expectOk("POST", path, body);
  };

  // Wait for every delivery; give up after --idle-timeout s without progress or --timeout s.
  const awaitBurst = async (b) => {
    const hardDeadline = nowMs() + Number(opt.timeout) * 1000;
    let lastCount = -1;
    let lastProgress = nowMs();
    while (b.delivered < b.expected) {
      const tick = await Promise.race([b.finished.then(() => "done"), sleep(250).then(() => "tick")]);
      if (tick === "done") break;
      if (b.delivered !== lastCount) {
        lastCount = b.delivered;
        lastProgress = nowMs();
      }
      if (nowMs() - lastProgress > Number(opt["idle-timeout"]) * 1000 || nowMs() > hardDeadline) {
        return true;
      }
    }
    return false;
  };

  const tally = (b) => {
    let duplicates = 0;
    let reordered = 0;
    let unexpected = 0;
    let socketsComplete = 0;
    for (const c of clients) {
      duplicates += c.duplicates;
      reordered += c.reordered;
      unexpected += c.unexpected;
      if (c.targeted && c.unique === b.count) socketsComplete += 1;
    }
    return { duplicates, reordered, unexpected, socketsComplete };
  };

  // Warm-up (wakes both servers' code paths; checked, not measured).
  const warmCount = Math.min(COUNT, opt.warmup === undefined ? COUNT : Number(opt.warmup));
  let warmup = null;
  if (warmCount > 0) {
    await waitQuiet();
    burst = newBurst(`${RUN}-w`, warmCount, true);
    await send(burst.runId, warmCount);
    const timedOut = await awaitBurst(burst);
    await sleep(200);
    const t = tally(burst);
    warmup = {
      messages: warmCount,
      expected: burst.expected,
      delivered: burst.delivered,
      exactly_once_in_order:
        !timedOut && burst.delivered === burst.expected && !t.duplicates && !t.reordered && !t.unexpected,
    };
  }

  const results = [];
  for (let i = 0; i < bursts; i += 1) {
    const quiet = await waitQuiet();
    burst = newBurst(`${RUN}-${i}`, COUNT, false);
    const b = burst;
    const window = await openWindow();
    const reply = (await send(b.runId, COUNT)).json;
    const timedOut = await awaitBurst(b);
    const cpu = await closeWindow(window);
    await sleep(300); // late duplicates or strays still count against this burst
    const t = tally(b);
    const lost = b.expected - b.delivered;
    const seconds = (b.lastRecv - b.firstSend) / 1000;
    results.push({
      expected: b.expected,
      delivered: b.delivered,
      lost,
      duplicates: t.duplicates,
      reordered: t.reordered,
      unexpected: t.unexpected,
      late: b.late,
      malformed: b.malformed,
      with_position: b.withPosition,
      sockets_complete: t.socketsComplete,
      timed_out: timedOut,
      exactly_once_in_order:
        lost === 0 && t.duplicates === 0 && t.reordered === 0 && t.unexpected === 0 && b.malformed === 0,
      seconds: round3(seconds),
      send_spread_ms: round3(b.lastSend - b.firstSend),
      deliveries_per_s: round3(b.delivered / seconds),
      latency_ms: summary(latencies.subarray(0, b.delivered)),
      emit_ms: round3(reply.emit_ms),
      server_cpu_us_per_delivery: b.delivered ? round3((cpu.server_cpu_s * 1e6) / b.delivered) : null,
      loadgen_cpu_us_per_delivery: b.delivered ? round3((cpu.loadgen_cpu_s * 1e6) / b.delivered) : null,
      // From the emit request to the last delivery: CPU seconds and shares of a core of
      // the server, the load generator and everything else on the machine.
      ...cpu,
      ...quiet,
    });
  }
  await closeAll(clients);

  // The run's figures: medians over its bursts; the delivery check over all of them.
  const med = (f) => round3(median(results.map(f)));
  const sum = (f) => results.reduce((a, r) => a + f(r), 0);
  return {
    mode: "fanout",
    server: SERVER,
    target,
    clients: CLIENTS,
    users: userCount,
    targeted_clients: targeted.length,
    ...(channelNames ? { channels: channelNames.length, emits_per_message: channelNames.length } : {}),
    count: COUNT,
    size: SIZE,
    bursts,
    users_setup_s: round3(usersSeconds),
    connect,
    ...(subscribe ? { subscribe } : {}),
    warmup,
    fanout: {
      expected: sum((r) => r.expected),
      delivered: sum((r) => r.delivered),
      lost: sum((r) => r.lost),
      duplicates: sum((r) => r.duplicates),
      reordered: sum((r) => r.reordered),
      unexpected: sum((r) => r.unexpected),
      late: sum((r) => r.late),
      malformed: sum((r) => r.malformed),
      with_position: sum((r) => r.with_position),
      stray,
      timed_out: results.some((r) => r.timed_out),
      exactly_once_in_order: stray === 0 && results.every((r) => r.exactly_once_in_order),
      deliveries_per_s: med((r) => r.deliveries_per_s),
      seconds: med((r) => r.seconds),
      latency_ms: {
        p50: med((r) => r.latency_ms.p50),
        p99: med((r) => r.latency_ms.p99),
        max: med((r) => r.latency_ms.max),
      },
      emit_ms: med((r) => r.emit_ms),
      server_cpu_us_per_delivery: med((r) => r.server_cpu_us_per_delivery),
      loadgen_cpu_us_per_delivery: med((r) => r.loadgen_cpu_us_per_delivery),
      server_cpu_share: med((r) => r.server_cpu_share),
      loadgen_cpu_share: med((r) => r.loadgen_cpu_share),
      other_cpu_share: med((r) => r.other_cpu_share),
      bursts: results,
    },
  };
}

// ---------------------------------------------------------------- reconnect storm

// At most `width` holders at once, served in the order they asked.
function slots(width) {
  let free = width;
  const waiting = [];
  return {
    acquire() {
      if (free > 0) {
        free -= 1;
        return Promise.resolve();
      }
      return new Promise((resolve) => waiting.push(resolve));
    },
    release() {
      const next = waiting.shift();
      if (next) next();
      else free += 1;
    },
  };
}

// python only (it needs socket tokens and the recovery contract of issue 16). Connect
// --clients sockets that reconnect by themselves (socket.io-client's own reconnection,
// its default delays), each with an `auth` callback that fetches a fresh socket token
// and sends the last position received (or, with none yet, the token's `position`), at
// most --concurrency token + handshake pairs at a time, as the connect scenario does.
// Then: a checked burst of --pre messages (every socket holds a position), every socket
// drops its transport (engine.close()), and once the server counts no socket, --count
// messages are emitted (/bench/broadcast, as in fanout). Until they are, the `auth`
// callbacks wait (an engine.io transport may reopen meanwhile, a CONNECT is not sent);
// then everything reconnects. Measured from that moment ("reconnect start"): the time
// until every socket has received all --count messages exactly once, in order, after a
// `recovery` event with complete=true, with every deviation counted.
async function modeStorm() {
  if (SERVER !== "python") throw new Error("storm mode needs the python server");
  const PRE = Number(opt.pre);
  const userCount = Number(opt.users || CLIENTS);
  const { users, seconds: usersSeconds } = await makeUsers(userCount);
  const clients = usersFor(users, CLIENTS).map((user, index) => ({
    index,
    user,
    socket: null,
    holdsSlot: false,
    lastPosition: null,
    awaitingRecovery: false, // this connection's first event must be `recovery`
    preSeen: 0,
    reconnectedAt: null,
    recoveredAt: null,
    doneAt: null,
    recoveries: 0,
    incomplete: 0,
    recoveryCount: 0,
    seen: new Uint8Array(COUNT),
    unique: 0,
    duplicates: 0,
    reordered: 0,
    maxSeq: -1,
    beforeRecovery: 0,
    old: 0,
  }));
  const preRun = `${RUN}-pre`;
  const stormRun = `${RUN}-storm`;
  const width = slots(CONCURRENCY);
  const tally = {
    tokenErrors: 0,
    connectErrors: 0,
    firstError: null,
    staleAuth: 0,
    attempts: 0,
    reopenedBeforeStart: 0,
    disconnects: 0,
    initialRecoveries: 0,
    initialComplete: 0,
    unexpectedRecoveries: 0,
    withoutPosition: 0,
    stray: 0,
    progress: 0,
  };
  let phase = "initial"; // initial -> live -> down -> storm
  let gate = Promise.resolve();
  let openGate = () => {};
  let done = 0;
  let finish = () => {};
  const finished = new Promise((resolve) => {
    finish = resolve;
  });

  const release = (c) => {
    if (c.holdsSlot) {
      c.holdsSlot = false;
      width.release();
    }
  };
  const noteError = (error) => {
    tally.firstError = tally.firstError || String(error?.message || error);
  };

  // What a recovering client does on every (re)connection: a fresh token, the last position.
  const auth = (c) => (cb) => {
    (async () => {
      await gate;
      await width.acquire();
      c.holdsSlot = true;
      const engine = c.socket.io.engine;
      if (!engine || engine.readyState !== "open") {
        // Closed while waiting (the server's SOCKETIO_CONNECT_TIMEOUT_SECONDS): the next
        // transport calls auth again.
        tally.staleAuth += 1;
        release(c);
        return;
      }
      let reply;
      try {
        reply = (await expectOk("POST", "/api/v1/user/sockettoken", undefined, c.user.jwt)).json;
      } catch (error) {
        tally.tokenErrors += 1;
        noteError(error);
        release(c);
        engine.close(); // socket.io-client reconnects by itself, and asks again
        return;
      }
      const position = c.lastPosition ?? reply.position;
      c.awaitingRecovery = typeof position === "string";
      cb(c.awaitingRecovery ? { token: reply.token, position } : { token: reply.token });
    })().catch((error) => {
      noteError(error);
      release(c);
    });
  };

  const onRecovery = (c, info) => {
    tally.progress += 1;
    if (phase !== "storm") {
      tally.initialRecoveries += 1;
      if (info && info.complete === true) tally.initialComplete += 1;
      c.awaitingRecovery = false;
      return;
    }
    if (!c.awaitingRecovery) {
      tally.unexpectedRecoveries += 1;
      return;
    }
    c.awaitingRecovery = false;
    c.recoveries += 1;
    if (!info || info.complete !== true) c.incomplete += 1;
    if (info && Number.isInteger(info.count)) c.recoveryCount += info.count;
    if (c.recoveredAt === null) c.recoveredAt = nowMs();
  };

  const onMessage = (c, msg, meta) => {
    const now = nowMs();
    tally.progress += 1;
    if (meta && typeof meta.position === "string") c.lastPosition = meta.position;
    else tally.withoutPosition += 1;
    if (phase === "storm" && c.awaitingRecovery) c.beforeRecovery += 1;
    if (!msg || (msg.run !== preRun && msg.run !== stormRun)) {
      tally.stray += 1;
      return;
    }
    if (msg.run === preRun) {
      if (phase === "live") c.preSeen += 1;
      else c.old += 1; // a message from before the drop, delivered again
      return;
    }
    const seq = msg.seq;
    if (!Number.isInteger(seq) || seq < 0 || seq >= COUNT) {
      tally.stray += 1;
      return;
    }
    if (c.seen[seq]) {
      c.duplicates += 1;
      return;
    }
    c.seen[seq] = 1;
    c.unique += 1;
    if (seq < c.maxSeq) c.reordered += 1;
    else c.maxSeq = seq;
    if (c.unique === COUNT) {
      c.doneAt = now;
      done += 1;
      if (done === clients.length) finish();
    }
  };

  const open = (c) =>
    new Promise((resolve, reject) => {
      const socket = io(URL_, { transports: ["websocket"], forceNew: true, timeout: 30000, auth: auth(c) });
      c.socket = socket;
      socket.on(CHANNEL, (msg, meta) => onMessage(c, msg, meta));
      socket.on("recovery", (info) => onRecovery(c, info));
      socket.on("connect", () => {
        release(c);
        tally.progress += 1;
        if (phase === "initial") resolve();
        else if (phase === "storm" && c.reconnectedAt === null) c.reconnectedAt = nowMs();
      });
      socket.on("connect_error", (error) => {
        release(c);
        tally.connectErrors += 1;
        noteError(error);
        if (phase === "initial") {
          socket.close();
          reject(new Error(`connect_error: ${error.message}`));
        } else if (!socket.active) {
          // Refused by the server: socket.io-client leaves that to the application.
          setTimeout(() => socket.connect(), 1000);
        }
      });
      socket.on("disconnect", () => {
        if (phase === "live" || phase === "storm") tally.disconnects += 1;
      });
      socket.io.on("close", () => release(c));
      socket.io.on("reconnect_attempt", () => {
        tally.attempts += 1;
      });
      socket.io.on("open", () => {
        if (phase === "down") tally.reopenedBeforeStart += 1;
      });
    });

  // Connect, as the connect scenario does (but the `auth` callback holds the slot).
  const connectStarted = nowMs();
  let failures = 0;
  await pool(clients.length, CONCURRENCY, async (i) => {
    try {
      await open(clients[i]);
    } catch (error) {
      failures += 1;
      noteError(error);
    }
  });
  const connectSeconds = (nowMs() - connectStarted) / 1000;
  log(`connected ${clients.length - failures}/${CLIENTS} in ${round3(connectSeconds)}s`);
  if (failures) throw new Error(`${failures} connections failed: ${tally.firstError}`);
  await sleep(SETTLE_MS);

  // Every socket receives a first burst, so it holds a position from a message.
  phase = "live";
  const send = (run, count) => expectOk("POST", "/bench/broadcast", { count, size: SIZE, run });
  if (PRE > 0) {
    await send(preRun, PRE);
    const deadline = nowMs() + Number(opt["idle-timeout"]) * 1000;
    while (clients.some((c) => c.preSeen < PRE) && nowMs() < deadline) await sleep(50);
  }
  const preOk = clients.every((c) => c.preSeen === PRE);
  const positioned = clients.filter((c) => c.lastPosition !== null).length;
  if (!preOk) log("warning: the first burst did not reach every socket");
  if (positioned < clients.length) log(`warning: ${positioned} sockets hold a position`);

  // Drop every transport; socket.io-client starts reconnecting by itself.
  gate = new Promise((resolve) => {
    openGate = resolve;
  });
  phase = "down";
  const dropAt = nowMs();
  for (const c of clients) c.socket.io.engine.close();
  const emptyDeadline = nowMs() + 60000;
  let onServer = null;
  while (nowMs() < emptyDeadline) {
    onServer = (await stats(false)).sockets;
    if (onServer === 0) break;
    await sleep(100);
  }
  const emptyAt = nowMs();
  if (onServer !== 0) throw new Error(`${onServer} sockets still on the server 60 s after the drop`);
  const emitted = (await send(stormRun, COUNT)).json;
  log(`dropped ${clients.length}, server empty after ${round3((emptyAt - dropAt) / 1000)}s, ${COUNT} emitted`);

  // Reconnect start.
  const window = await openWindow();
  const startAt = nowMs();
  phase = "storm";
  openGate();
  const idleLimit = Math.max(30, Number(opt["idle-timeout"])) * 1000;
  const hardDeadline = startAt + Number(opt.timeout) * 1000;
  let timedOut = false;
  let lastProgress = -1;
  let lastProgressAt = nowMs();
  while (done < clients.length) {
    const tick = await Promise.race([finished.then(() => "done"), sleep(250).then(() => "tick")]);
    if (tick === "done") break;
    if (tally.progress !== lastProgress) {
      lastProgress = tally.progress;
      lastProgressAt = nowMs();
    }
    if (nowMs() - lastProgressAt > idleLimit || nowMs() > hardDeadline) {
      timedOut = true;
      break;
    }
  }
  const cpu = await closeWindow(window);
  await sleep(500); // late duplicates still count
  phase = "end";
  await closeAll(clients);

  const sum = (f) => clients.reduce((a, c) => a + f(c), 0);
  const latest = (f) => {
    const values = clients.map(f);
    return values.every((v) => v !== null) ? round3((Math.max(...values) - startAt) / 1000) : null;
  };
  const ok = (c) =>
    c.unique === COUNT &&
    c.duplicates === 0 &&
    c.reordered === 0 &&
    c.beforeRecovery === 0 &&
    c.old === 0 &&
    c.recoveries > 0 &&
    c.incomplete === 0;
  const recovered = clients.filter(ok).length;
  const lost = sum((c) => COUNT - c.unique);
  const duplicates = sum((c) => c.duplicates + c.old);
  const allRecovered = latest((c) => c.doneAt);
  const allReconnected = latest((c) => c.reconnectedAt);
  const doneTimes = clients.filter((c) => c.doneAt !== null).map((c) => (c.doneAt - startAt) / 1000);
  return {
    mode: "storm",
    server: SERVER,
    clients: CLIENTS,
    users: userCount,
    count: COUNT,
    size: SIZE,
    users_setup_s: round3(usersSeconds),
    connect: {
      connections: clients.length - failures,
      concurrency: CONCURRENCY,
      seconds: round3(connectSeconds),
      per_s: round3((clients.length - failures) / connectSeconds),
      recovery_events: tally.initialRecoveries,
      recovery_complete: tally.initialComplete,
    },
    pre: { messages: PRE, every_socket_received: preOk, sockets_with_position: positioned },
    drop: {
      server_empty_s: round3((emptyAt - dropAt) / 1000),
      emit_ms: round3(emitted.emit_ms),
      gap_s: round3((startAt - dropAt) / 1000),
      transports_reopened_before_start: tally.reopenedBeforeStart,
    },
    storm: {
      seconds: allRecovered,
      reconnected_s: allReconnected,
      from_drop_s: allRecovered === null ? null : round3(allRecovered + (startAt - dropAt) / 1000),
      socket_done_s: summary(doneTimes),
      sockets_per_s: allRecovered ? round3(clients.length / allRecovered) : null,
      sockets: clients.length,
      sockets_recovered: recovered,
      messages_expected: clients.length * COUNT,
      messages_recovered: sum((c) => c.unique),
      lost,
      duplicates,
      reordered: sum((c) => c.reordered),
      before_recovery: sum((c) => c.beforeRecovery),
      incomplete_recoveries: sum((c) => c.incomplete),
      sockets_without_recovery: clients.filter((c) => c.recoveries === 0).length,
      recovery_events: sum((c) => c.recoveries),
      recovery_count_total: sum((c) => c.recoveryCount),
      unexpected_recoveries: tally.unexpectedRecoveries,
      messages_without_position: tally.withoutPosition,
      stray: tally.stray,
      reconnect_attempts: tally.attempts,
      stale_auth: tally.staleAuth,
      token_errors: tally.tokenErrors,
      connect_errors: tally.connectErrors,
      first_error: tally.firstError,
      disconnects: tally.disconnects,
      timed_out: timedOut,
      exactly_once_in_order:
        !timedOut && recovered === clients.length && tally.stray === 0 && tally.unexpectedRecoveries === 0,
      server_cpu_ms_per_socket: round3((cpu.server_cpu_s * 1000) / clients.length),
      ...cpu,
    },
  };
}

// ---------------------------------------------------------------- main

const modes = { tokens: modeTokens, fanout: modeFanout, idle: modeIdle, storm: modeStorm };
const mode = modes[opt.mode];
if (!mode) {
  console.error(`unknown --mode ${opt.mode}`);
  process.exit(2);
}
const watchdog = setTimeout(() => {
  console.error("loadgen: overall time limit reached");
  process.exit(3);
}, (Number(opt.timeout) + 600) * 1000);
watchdog.unref();

try {
  const result = await mode();
  result.run = RUN;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  agent.destroy();
  process.exit(0);
} catch (error) {
  console.error(`loadgen failed: ${error.stack || error}`);
  process.exit(1);
}
