// The reference server of the benchmark: a plain Node.js socket.io 4 server doing
// what the generated app's message client does, without authentication.
//
// - A socket connects with `auth: {user: "<id>"}` and joins the same three rooms a
//   socket of the generated app joins: `user:<id>`, `jwt:<random>` and `everyone`.
// - The same /bench endpoints as benchmarks/python_server.py:
//     POST /bench/broadcast {count, size, run}         io.to("everyone").emit(...) x count
//     POST /bench/users     {count, size, run, users}  io.to(["user:<id>", ...]).emit(...) x count
//     POST /bench/channel   {count, size, run, channels}
//                           count x (io.to(channel).emit(...) for each channel)
//     GET  /bench/stats[?gc=1]                         {rss_kb, cpu_s, sockets, ...}
//   Each payload is {run, seq, t, pad}: t is the send time (ms since the epoch,
//   sub-millisecond), seq counts from 0, pad brings the packet to `size` bytes.
// - A socket's `subscribe` event {channel} joins the room named `channel` and acks
//   {ok: true}: what the generated app's channels do (`emitToChannel`), without the
//   authorisation, the limits and the presence announcements.
// - With MONGODB_URI set (run.py's `node_token` kind), the socket token flow of the
//   generated app, the way a Node.js app would write it on the `mongodb` driver, so
//   that a connection does the same work on both sides (the like-for-like connect
//   rate; without MONGODB_URI, none of this runs):
//     POST /bench/login {user}              {token: <HS256 JWT for user, 1 h>}
//     POST /api/v1/user/sockettoken         Bearer JWT (signature and expiry checked) ->
//                                           {token, expires_in}: 32 random bytes, stored
//                                           as their SHA-256 (`_id`) with the grant and
//                                           `expires_at` (TTL index) by one insertOne
//     handshake (auth {token})              the token's document deleted with a filter
//                                           on its hash and `expires_at > now` (deleteOne,
//                                           one query); the grant is the one this process
//                                           remembers from issuing it, as the generated
//                                           app remembers the grants it issued; refused
//                                           with INVALID_TOKEN otherwise.
//   One query per request, as such an app sends them; with TOKEN_BATCHES=1 (the
//   `node_token_batched` kind), the queries of requests that arrive together share one
//   round trip, as the generated app batches them (batching.Batcher): an insertMany of
//   the tokens, a deleteMany with `_id: {$in: [...]}` and the expiry of the handshakes;
//   each kind's calls gather while its previous batch is out.
//
// Usage: node [--expose-gc] node_server.js [port]   (port 0, the default, picks a free one)
// Prints "listening on http://127.0.0.1:PORT" once ready.
"use strict";

const http = require("node:http");
const fs = require("node:fs");
const crypto = require("node:crypto");
const { performance } = require("node:perf_hooks");
const { Server } = require("socket.io");

const MONGODB_URI = process.env.MONGODB_URI || "";
const TOKEN_TTL_S = 30; // SOCKET_TOKEN_TTL_SECONDS, the generated app's default
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;
const TOKEN_BATCHES = process.env.TOKEN_BATCHES === "1";
const JWT_SECRET = crypto.randomBytes(32);

const CHANNEL = "bench";
const EVERYONE = "everyone";

function nowMs() {
  return performance.timeOrigin + performance.now();
}

function rssKb() {
  const status = fs.readFileSync("/proc/self/status", "utf8");
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match ? Number(match[1]) : null;
}

function cpuSeconds() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

// The payload's fixed part is {"run":"…","seq":N,"t":N,"pad":"…"}; pad is sized so the
// whole packet (`42["bench",{…}]`) is about `size` bytes, as in python_server.py.
function padFor(size, run) {
  const probe = `42["${CHANNEL}",${JSON.stringify({ run, seq: 0, t: nowMs(), pad: "" })}]`;
  return "x".repeat(Math.max(0, size - probe.length));
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : {});
      } catch (error) {
        reject(error);
      }
    });
    req.on("error", reject);
  });
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json; charset=UTF-8",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(text);
}

// socket.io, attached below, passes every request outside /socket.io/ to this handler.
const server = http.createServer((req, res) => {
  route(req, res).catch((error) =>
    send(res, 400, { error: { code: "bad_request", message: String(error) } }),
  );
});
const io = new Server(server, {
  // The engine.io defaults (pingInterval 25 s, pingTimeout 20 s, perMessageDeflate
  // off) match the generated app's settings.
  serveClient: false,
  transports: ["websocket", "polling"],
});

// ---------------------------------------------------------------- socket tokens (MONGODB_URI)

let tokens = null; // the socket_tokens collection, once connected
// token hash -> grant {user, jti, exp}, until its handshake (a benchmark server: a token
// never used stays here, where an app would let it go with its expiry)
const issued = new Map();

function b64url(value) {
  return Buffer.from(value).toString("base64url");
}

function signJwt(payload) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(payload));
  const mac = crypto.createHmac("sha256", JWT_SECRET).update(`${head}.${body}`).digest();
  return `${head}.${body}.${mac.toString("base64url")}`;
}

// The JWT's claims if its signature holds and it has not expired, else null.
function verifyJwt(jwt) {
  const parts = jwt.split(".");
  if (parts.length !== 3) return null;
  const mac = crypto.createHmac("sha256", JWT_SECRET).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== mac.length || !crypto.timingSafeEqual(given, mac)) return null;
  try {
    const header = JSON.parse(Buffer.from(parts[0], "base64url").toString("utf8"));
    const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
    if (header.alg !== "HS256" || typeof claims.sub !== "string") return null;
    return typeof claims.exp === "number" && claims.exp > Date.now() / 1000 ? claims : null;
  } catch {
    return null;
  }
}

function tokenHash(token) {
  return crypto.createHash("sha256").update(token, "ascii").digest("hex");
}

// Calls made while a batch of the same kind is out (or in the same event-loop turn)
// gather into the next one: run(items) answers with one result per item.
function batcher(run) {
  let waiting = [];
  let out = false;
  async function flush() {
    const batch = waiting;
    waiting = [];
    out = true;
    try {
      const results = await run(batch.map((call) => call.item));
      batch.forEach((call, i) => call.resolve(results[i]));
    } catch (error) {
      for (const call of batch) call.reject(error);
    }
    out = false;
    if (waiting.length) setImmediate(flush);
  }
  return (item) =>
    new Promise((resolve, reject) => {
      if (!waiting.length && !out) setImmediate(flush);
      waiting.push({ item, resolve, reject });
    });
}

const insertBatched = batcher(async (docs) => {
  await tokens.insertMany(docs, { ordered: false });
  return docs.map(() => true);
});

// Each hash's answer: whether its token was deleted (consumed) by this batch. All of
// them when the count says so; else (expired meanwhile, which the benchmark never
// sees) none, rather than guess which.
const deleteBatched = batcher(async (keys) => {
  const deleted = await tokens.deleteMany({ _id: { $in: keys }, expires_at: { $gt: new Date() } });
  return keys.map(() => deleted.deletedCount === keys.length);
});

async function storeToken(doc) {
  if (TOKEN_BATCHES) await insertBatched(doc);
  else await tokens.insertOne(doc);
}

async function deleteToken(key) {
  if (TOKEN_BATCHES) return deleteBatched(key);
  const deleted = await tokens.deleteOne({ _id: key, expires_at: { $gt: new Date() } });
  return deleted.deletedCount === 1;
}

async function issueSocketToken(req, res) {
  const auth = req.headers.authorization || "";
  const claims = auth.startsWith("Bearer ") ? verifyJwt(auth.slice(7).trim()) : null;
  if (!claims) {
    send(res, 401, { error: { code: "invalid_token", message: "a valid Bearer JWT is needed" } });
    return;
  }
  const token = crypto.randomBytes(32).toString("base64url");
  const key = tokenHash(token);
  const grant = { user: { _id: claims.sub }, jti: claims.jti, exp: claims.exp };
  await storeToken({ _id: key, ...grant, expires_at: new Date(Date.now() + TOKEN_TTL_S * 1000) });
  issued.set(key, grant);
  send(res, 200, { token, expires_in: TOKEN_TTL_S });
}

// The handshake: the token consumed (its document deleted if unexpired) or refused.
async function consumeSocketToken(socket, next) {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  if (typeof token !== "string" || !TOKEN_SHAPE.test(token)) {
    next(new Error("INVALID_TOKEN"));
    return;
  }
  const key = tokenHash(token);
  const grant = issued.get(key);
  issued.delete(key);
  try {
    const consumed = grant ? await deleteToken(key) : false;
    if (!consumed || grant.exp <= Date.now() / 1000) {
      next(new Error("INVALID_TOKEN"));
      return;
    }
  } catch {
    next(new Error("SERVICE_UNAVAILABLE"));
    return;
  }
  socket.data.grant = grant;
  next();
}

// ---------------------------------------------------------------- sockets

function joinRooms(socket) {
  const grant = socket.data.grant;
  if (grant) {
    socket.join([`user:${grant.user._id}`, `jwt:${grant.jti}`, EVERYONE]);
    return true;
  }
  const user = socket.handshake.auth && socket.handshake.auth.user;
  if (typeof user !== "string" || !user) return false;
  socket.join([`user:${user}`, `jwt:${crypto.randomBytes(12).toString("base64url")}`, EVERYONE]);
  return true;
}

io.on("connection", (socket) => {
  if (!joinRooms(socket)) {
    socket.disconnect(true);
    return;
  }
  socket.on("subscribe", (body, ack) => {
    const channel = body && body.channel;
    const reply = typeof ack === "function" ? ack : () => {};
    if (typeof channel !== "string" || !channel) {
      reply({ ok: false, error: { code: "invalid_channel", message: "channel must be a string" } });
      return;
    }
    socket.join(channel);
    reply({ ok: true });
  });
});

async function broadcast(body, targets) {
  const count = Number(body.count) || 0;
  const run = String(body.run || "");
  const pad = padFor(Number(body.size) || 120, run);
  const started = nowMs();
  const cpu0 = cpuSeconds();
  const room = io.to(targets);
  for (let seq = 0; seq < count; seq += 1) {
    room.emit(CHANNEL, { run, seq, t: nowMs(), pad });
  }
  return { sent: count, emit_ms: nowMs() - started, emit_cpu_s: cpuSeconds() - cpu0 };
}

// Per message (seq), one emit to each channel's room, as the python side's loop of
// emitToChannel calls does.
async function channels(body) {
  const count = Number(body.count) || 0;
  const run = String(body.run || "");
  const names = Array.isArray(body.channels) ? body.channels.map(String) : [];
  const pad = padFor(Number(body.size) || 120, run);
  const started = nowMs();
  const cpu0 = cpuSeconds();
  const rooms = names.map((name) => io.to(name));
  for (let seq = 0; seq < count; seq += 1) {
    for (const room of rooms) room.emit(CHANNEL, { run, seq, t: nowMs(), pad });
  }
  return { sent: count * names.length, emit_ms: nowMs() - started, emit_cpu_s: cpuSeconds() - cpu0 };
}

async function route(req, res) {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "POST" && url.pathname === "/bench/broadcast") {
    send(res, 200, await broadcast(await readJson(req), EVERYONE));
  } else if (req.method === "POST" && url.pathname === "/bench/users") {
    const body = await readJson(req);
    const users = Array.isArray(body.users) ? body.users.map(String) : [];
    send(res, 200, await broadcast(body, users.map((id) => `user:${id}`)));
  } else if (req.method === "POST" && url.pathname === "/bench/channel") {
    send(res, 200, await channels(await readJson(req)));
  } else if (tokens && req.method === "POST" && url.pathname === "/bench/login") {
    const body = await readJson(req);
    const user = String(body.user || "");
    const exp = Math.floor(Date.now() / 1000) + 3600;
    send(res, 200, { token: signJwt({ sub: user, jti: crypto.randomUUID(), exp }) });
  } else if (tokens && req.method === "POST" && url.pathname === "/api/v1/user/sockettoken") {
    await issueSocketToken(req, res);
  } else if (req.method === "GET" && url.pathname === "/bench/stats") {
    if (url.searchParams.get("gc") === "1" && typeof global.gc === "function") {
      global.gc();
    }
    send(res, 200, {
      server: "node",
      pid: process.pid,
      rss_kb: rssKb(),
      cpu_s: cpuSeconds(),
      sockets: io.of("/").sockets.size,
      time_ms: nowMs(),
    });
  } else {
    send(res, 404, { error: { code: "not_found", message: "no such resource" } });
  }
}

let client = null; // the MongoClient, with MONGODB_URI

function shutdown() {
  io.close();
  if (client) client.close().catch(() => {});
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

async function main() {
  if (MONGODB_URI) {
    const { MongoClient } = require("mongodb");
    client = new MongoClient(MONGODB_URI);
    await client.connect();
    tokens = client.db("bench").collection("socket_tokens");
    await tokens.createIndex({ expires_at: 1 }, { expireAfterSeconds: 0 });
    io.use((socket, next) => {
      consumeSocketToken(socket, next);
    });
  }
  const port = Number(process.argv[2] || process.env.PORT || 0);
  server.listen(port, "127.0.0.1", () => {
    const batches = TOKEN_BATCHES ? ", batched" : "";
    const tokenMode = MONGODB_URI ? `, socket tokens in MongoDB${batches}` : "";
    console.log(
      `listening on http://127.0.0.1:${server.address().port} (node ${process.version}${tokenMode})`,
    );
  });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
