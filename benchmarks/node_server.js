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
//
// Usage: node [--expose-gc] node_server.js [port]   (port 0, the default, picks a free one)
// Prints "listening on http://127.0.0.1:PORT" once ready.
"use strict";

const http = require("node:http");
const fs = require("node:fs");
const crypto = require("node:crypto");
const { performance } = require("node:perf_hooks");
const { Server } = require("socket.io");

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

io.on("connection", (socket) => {
  const user = socket.handshake.auth && socket.handshake.auth.user;
  if (typeof user !== "string" || !user) {
    socket.disconnect(true);
    return;
  }
  socket.join([`user:${user}`, `jwt:${crypto.randomBytes(12).toString("base64url")}`, EVERYONE]);
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

function shutdown() {
  io.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

const port = Number(process.argv[2] || process.env.PORT || 0);
server.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port} (node ${process.version})`);
});
