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
//           payload), loss, duplicates, reordering (per-socket sequence check).
//   idle    connect --clients sockets and hold them: server RSS per idle connection
//           (the server reads its own /proc/self/status before and after).
//
// Usage: node loadgen.mjs --mode fanout --url http://127.0.0.1:PORT --server python \
//          --clients 1000 --count 50 [--target users --fraction 0.1] ...
// Prints one JSON object on stdout; progress goes to stderr. Every wait is bounded.

import http from "node:http";
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
    users: { type: "string" },
    concurrency: { type: "string", default: "16" },
    duration: { type: "string", default: "5" },
    "pre-issue": { type: "boolean", default: false },
    settle: { type: "string", default: "1000" },
    timeout: { type: "string", default: "120" },
    "idle-timeout": { type: "string", default: "15" },
    run: { type: "string" },
  },
});

if (!opt.url) {
  console.error("usage: node loadgen.mjs --mode tokens|fanout|idle --url http://127.0.0.1:PORT --server python|node ...");
  process.exit(2);
}
const URL_ = opt.url.replace(/\/$/, "");
const { hostname: HOST, port: PORT } = new URL(URL_);
const SERVER = opt.server;
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

// python: sign up and log in `n` users over the app's REST API; node: ids only.
async function makeUsers(n) {
  const started = nowMs();
  const users = new Array(n);
  if (SERVER === "node") {
    for (let i = 0; i < n; i += 1) users[i] = { id: crypto.randomBytes(12).toString("hex") };
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
    socket.on(CHANNEL, (msg) => onMessage(client, msg));
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (error) => {
      socket.close();
      reject(new Error(`connect_error: ${error.message}`));
    });
  });
}

// Connect every client, W at a time. With tokens given (pre-issued), only handshakes.
async function connectAll(clients, onMessage, tokens = null) {
  const total = [];
  const tokenMs = [];
  const handshakeMs = [];
  let failures = 0;
  let firstError = null;
  const started = nowMs();
  await pool(clients.length, CONCURRENCY, async (i) => {
    const client = clients[i];
    const t0 = nowMs();
    try {
      let auth;
      if (SERVER === "node") {
        auth = { user: client.user.id };
      } else {
        auth = { token: tokens ? tokens[i] : await socketToken(client.user) };
      }
      const t1 = nowMs();
      await openSocket(client, auth, onMessage);
      const t2 = nowMs();
      if (!tokens && SERVER !== "node") tokenMs.push(t1 - t0);
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
    includes_token: SERVER !== "node" && !tokens,
    seconds: round3(seconds),
    per_s: round3(total.length / seconds),
    latency_ms: summary(total),
    token_ms: tokenMs.length ? summary(tokenMs) : null,
    handshake_ms: summary(handshakeMs),
  };
}

async function preIssue(clients) {
  const tokens = new Array(clients.length);
  const started = nowMs();
  await pool(clients.length, CONCURRENCY, async (i) => {
    tokens[i] = await socketToken(clients[i].user);
  });
  return { tokens, seconds: (nowMs() - started) / 1000 };
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
  };
}

async function modeIdle() {
  const userCount = Number(opt.users || CLIENTS);
  const { users, seconds: usersSeconds } = await makeUsers(userCount);
  const clients = usersFor(users, CLIENTS).map((user, i) => makeClient(i, user));
  let issued = null;
  if (opt["pre-issue"] && SERVER === "python") issued = await preIssue(clients);
  await sleep(SETTLE_MS);
  const before = await stats(true);
  const connect = await connectAll(clients, () => {}, issued ? issued.tokens : null);
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
    pre_issue_s: issued ? round3(issued.seconds) : null,
    connect,
    memory: memoryOf(before, after, connect.connections),
  };
}

async function modeFanout() {
  const target = opt.target;
  if (target !== "everyone" && target !== "users") throw new Error("--target is everyone or users");
  const userCount = Number(opt.users || CLIENTS);
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
  const targeted = clients.filter((c) => c.targeted);
  for (const c of targeted) c.seen = new Uint8Array(COUNT);
  const expected = targeted.length * COUNT;

  const latencies = new Float64Array(expected);
  let delivered = 0;
  let firstSend = Infinity;
  let lastSend = -Infinity;
  let lastRecv = -Infinity;
  let stray = 0;
  let malformed = 0;
  let finish = null;
  const finished = new Promise((resolve) => {
    finish = resolve;
  });

  const onMessage = (client, msg) => {
    const now = nowMs();
    if (!msg || msg.run !== RUN) {
      stray += 1;
      return;
    }
    if (!client.targeted) {
      client.unexpected += 1;
      return;
    }
    const seq = msg.seq;
    if (!Number.isInteger(seq) || seq < 0 || seq >= COUNT || typeof msg.t !== "number") {
      malformed += 1;
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
    latencies[delivered] = now - msg.t;
    delivered += 1;
    if (msg.t < firstSend) firstSend = msg.t;
    if (msg.t > lastSend) lastSend = msg.t;
    lastRecv = now;
    if (delivered === expected) finish();
  };

  const connect = await connectAll(clients, onMessage);
  log(`connected ${connect.connections}/${CLIENTS} in ${connect.seconds}s`);
  if (connect.failures) throw new Error(`${connect.failures} connections failed: ${connect.first_error}`);
  await sleep(SETTLE_MS);

  const before = await stats(false);
  const cpu0 = cpuSeconds();
  const path = target === "everyone" ? "/bench/broadcast" : "/bench/users";
  const body = { count: COUNT, size: SIZE, run: RUN };
  if (targetIds) body.users = targetIds;
  const reply = (await expectOk("POST", path, body)).json;

  // Wait for every delivery; give up after --idle-timeout s without progress or --timeout s.
  const hardDeadline = nowMs() + Number(opt.timeout) * 1000;
  let lastCount = -1;
  let lastProgress = nowMs();
  let timedOut = false;
  while (delivered < expected) {
    const tick = await Promise.race([finished.then(() => "done"), sleep(250).then(() => "tick")]);
    if (tick === "done") break;
    if (delivered !== lastCount) {
      lastCount = delivered;
      lastProgress = nowMs();
    }
    if (nowMs() - lastProgress > Number(opt["idle-timeout"]) * 1000 || nowMs() > hardDeadline) {
      timedOut = true;
      break;
    }
  }
  const loadgenCpu = cpuSeconds() - cpu0;
  const after = await stats(false);
  // A short grace period to catch late duplicates or strays, then a final count.
  await sleep(300);

  let duplicates = 0;
  let reordered = 0;
  let unexpected = 0;
  let socketsComplete = 0;
  for (const c of clients) {
    duplicates += c.duplicates;
    reordered += c.reordered;
    unexpected += c.unexpected;
    if (c.targeted && c.unique === COUNT) socketsComplete += 1;
  }
  const lost = expected - delivered;
  const seconds = (lastRecv - firstSend) / 1000;
  const serverCpu = after.cpu_s - before.cpu_s;
  await closeAll(clients);
  return {
    mode: "fanout",
    server: SERVER,
    target,
    clients: CLIENTS,
    users: userCount,
    targeted_clients: targeted.length,
    count: COUNT,
    size: SIZE,
    users_setup_s: round3(usersSeconds),
    connect,
    fanout: {
      expected,
      delivered,
      lost,
      duplicates,
      reordered,
      unexpected,
      stray,
      malformed,
      sockets_complete: socketsComplete,
      timed_out: timedOut,
      exactly_once_in_order:
        lost === 0 && duplicates === 0 && reordered === 0 && unexpected === 0 && malformed === 0,
      seconds: round3(seconds),
      send_spread_ms: round3(lastSend - firstSend),
      deliveries_per_s: round3(delivered / seconds),
      latency_ms: summary(latencies.subarray(0, delivered)),
      emit_ms: round3(reply.emit_ms),
      server_cpu_s: round3(serverCpu),
      server_cpu_us_per_delivery: delivered ? round3((serverCpu * 1e6) / delivered) : null,
      loadgen_cpu_s: round3(loadgenCpu),
      loadgen_cpu_us_per_delivery: delivered ? round3((loadgenCpu * 1e6) / delivered) : null,
    },
  };
}

// ---------------------------------------------------------------- main

const modes = { tokens: modeTokens, fanout: modeFanout, idle: modeIdle };
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
