// Recovery of missed messages (issue 16) with the real JS client, socket.io-client 4
// under node, against a running generated app:
//  1. the wire contract by hand: a socket whose transport is dropped
//     (socket.io.engine.close()) reconnects by itself with a fresh token and the last
//     position; messages are emitted while it is away AND while it reconnects and
//     replays; it gets `recovery` first, then every message once, in order;
//  2. malformed or unknown positions: `recovery` {complete: false}, no replay, connected;
//  3. the app's own static/recovery.js driving a socket through the same drop.
//
// usage: node recovery_flow.mjs http://127.0.0.1:PORT /path/to/static/recovery.js
//
// Prints one JSON object of observations on stdout; tests/test_js_recovery.py asserts
// on it. Exits non-zero only when the flow itself could not run.
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { io } from "socket.io-client";

import { restClient, signUpVerified } from "./harness.mjs";

const BASE = (process.argv[2] || "").replace(/\/+$/, "");
const RECOVERY_JS = process.argv[3];
if (!/^https?:\/\//.test(BASE) || !RECOVERY_JS) {
  console.error("usage: node recovery_flow.mjs http://127.0.0.1:PORT /path/to/recovery.js");
  process.exit(2);
}

const STEP_TIMEOUT_MS = 10000; // one expected event or state
const QUIET_MS = 600; // how long "no duplicate comes after" is watched for
const WATCHDOG_MS = 90000;
const GAP_MESSAGES = 12; // emitted while the socket is away
const REPLAY_MESSAGES = 12; // emitted while it reconnects and replays
// Fast reconnection: the test holds it with a gate on the token instead.
const RECONNECT = { reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 };

const results = {};
const sockets = new Set();

function finish(code, error) {
  if (error) results.error = String(error && error.stack ? error.stack : error);
  for (const socket of sockets) socket.disconnect();
  process.stdout.write(`${JSON.stringify(results)}\n`);
  process.exitCode = code;
  setTimeout(() => process.exit(code), 50).unref();
}

const watchdog = setTimeout(() => finish(1, `watchdog: flow not done in ${WATCHDOG_MS} ms`), WATCHDOG_MS);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate, what) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const { apiOk } = restClient(BASE);

// Signed up and verified through its mail (login waits for the verification).
async function newUser(label) {
  const suffix = randomBytes(4).toString("hex");
  const { user, username, password } = await signUpVerified(BASE, `rec_${label}_${suffix}`);
  const { token } = await apiOk("POST", "/api/v1/user/login", { body: { username, password } });
  return { label, id: user._id, username, jwt: token };
}

const socketToken = (user) => apiOk("POST", "/api/v1/user/sockettoken", { jwt: user.jwt });

async function post(author, text, to) {
  const body = to ? { text, to } : { text };
  const { message } = await apiOk("POST", "/api/v1/db/message", { jwt: author.jwt, body }, 201);
  return message;
}

// What a socket saw, in order: every event's name, argument count and arguments.
function record(socket) {
  socket.log = [];
  socket.onAny((event, ...args) => {
    if (event === "recovery" || event === "message") socket.log.push({ event, args });
  });
  return socket;
}

const hasMessage = (socket, id) => socket.log.some((e) => e.event === "message" && e.args[0]._id === id);

const describe = (entry) => ({
  event: entry.event,
  argc: entry.args.length,
  id: entry.event === "message" ? entry.args[0]._id : null,
  text: entry.event === "message" ? entry.args[0].text : null,
  payload: entry.event === "recovery" ? entry.args[0] : null,
  meta: entry.event === "message" ? (entry.args[1] ?? null) : null,
});

// 1. The contract by hand: drop, messages in the gap and during the replay.
async function dropAndRecover(alice, bob, carol) {
  const out = (results.drop = { token_positions: [], auth_sent: [] });
  let lastPosition = null;
  let gate = null; // while set, the next handshake waits for it
  let authCalls = 0;
  const socket = record(
    io(BASE, {
      transports: ["websocket"],
      forceNew: true,
      ...RECONNECT,
      // socket.io-client calls this on the first connection and on every reconnection.
      auth: (callback) => {
        authCalls += 1;
        (async () => {
          if (gate) await gate.promise;
          const answer = await socketToken(bob);
          out.token_positions.push(answer.position ?? null);
          if (lastPosition === null && typeof answer.position === "string") lastPosition = answer.position;
          const auth = { token: answer.token, position: lastPosition };
          out.auth_sent.push(auth.position);
          callback(auth);
        })().catch((error) => {
          out.auth_error = String(error);
          callback({});
        });
      },
    }),
  );
  sockets.add(socket);
  socket.on("message", (_payload, meta) => {
    if (meta && typeof meta.position === "string") lastPosition = meta.position;
  });
  const oneArgument = [];
  socket.on("message", (payload) => oneArgument.push(payload));
  const disconnects = [];
  socket.on("disconnect", (reason) => disconnects.push(reason));

  await until(() => socket.connected, "the first connection");
  // With the token's position, the first connection is answered by `recovery` too.
  await sleep(QUIET_MS);
  out.first_connection = socket.log.map(describe);

  const before = await post(alice, `before the drop ${randomBytes(2).toString("hex")}`);
  await until(() => hasMessage(socket, before._id), "the first message");
  out.before = { id: before._id, position: lastPosition };

  // Cut the transport: the socket reconnects by itself; the gate holds that reconnection.
  gate = deferred();
  const callsBefore = authCalls;
  const mark = socket.log.length;
  const oneArgumentMark = oneArgument.length;
  socket.io.engine.close();
  await until(() => disconnects.length === 1, "the disconnect");
  out.disconnect_reason = disconnects[0];
  await until(() => authCalls > callsBefore, "the reconnection attempt");
  out.connected_during_gap = socket.connected;

  const expected = [];
  for (let i = 0; i < GAP_MESSAGES; i += 1) {
    const to = i % 2 ? bob.id : undefined; // broadcasts and direct messages, interleaved
    expected.push((await post(alice, `gap ${i}`, to))._id);
    if (i === 4) out.not_for_bob = (await post(alice, "for carol only", carol.id))._id;
  }
  // Open the gate and go on emitting while the socket reconnects and replays.
  gate.resolve();
  gate = null;
  out.replay_sent_after_recovery_seen = 0;
  for (let i = 0; i < REPLAY_MESSAGES; i += 1) {
    const to = i % 2 ? undefined : bob.id;
    expected.push((await post(alice, `during replay ${i}`, to))._id);
    if (socket.log.slice(mark).some((e) => e.event === "recovery")) out.replay_sent_after_recovery_seen += 1;
  }
  const got = () => socket.log.slice(mark).filter((e) => e.event === "message").length;
  await until(() => got() >= expected.length, `${expected.length} messages after the drop`);
  await sleep(QUIET_MS);

  out.expected = expected;
  out.after_drop = socket.log.slice(mark).map(describe);
  out.connected_after = socket.connected;
  const twoArgument = socket.log.slice(mark).filter((e) => e.event === "message").map((e) => e.args[0]);
  const oneArgumentAfter = oneArgument.slice(oneArgumentMark);
  out.one_argument = {
    count: oneArgumentAfter.length,
    same_objects: oneArgumentAfter.every((payload, i) => payload === twoArgument[i]),
    ids: oneArgumentAfter.map((payload) => payload._id),
  };
  socket.disconnect();
  sockets.delete(socket);
  return out;
}

// 2. A position the server cannot use: complete false, no replay, the socket works.
async function badPosition(alice, bob, position) {
  const { token } = await socketToken(bob);
  const socket = record(
    io(BASE, { transports: ["websocket"], forceNew: true, reconnection: false, auth: { token, position } }),
  );
  sockets.add(socket);
  const out = {};
  const refused = deferred();
  socket.once("connect_error", (error) => refused.resolve(error.message));
  const outcome = await Promise.race([
    new Promise((resolve) => socket.once("connect", () => resolve("connected"))),
    refused.promise,
    sleep(STEP_TIMEOUT_MS).then(() => "no answer"),
  ]);
  out.outcome = outcome;
  if (outcome === "connected") {
    const live = await post(alice, `live after a bad position ${randomBytes(2).toString("hex")}`, bob.id);
    await until(() => hasMessage(socket, live._id), "a live message");
    await sleep(QUIET_MS / 2);
    out.live_id = live._id;
    out.events = socket.log.map(describe);
  }
  socket.disconnect();
  sockets.delete(socket);
  return out;
}

// 3. The app's static/recovery.js through the same drop.
async function withRecoveryJs(alice, erin) {
  const TransomRecovery = createRequire(import.meta.url)(RECOVERY_JS);
  const fetcher = TransomRecovery.tokenFetcher(() => erin.jwt, `${BASE}/api/v1/user/sockettoken`);
  let gate = null;
  const failures = []; // what the next token requests fail with, in turn
  let tokenCalls = 0;
  const recoveries = [];
  const tokenErrors = [];
  const live = TransomRecovery.connect(io, {
    url: BASE,
    socketOptions: { transports: ["websocket"], forceNew: true, ...RECONNECT },
    fetchToken: () => {
      tokenCalls += 1;
      if (failures.length) return Promise.reject(failures.shift());
      return (gate ? gate.promise : Promise.resolve()).then(fetcher);
    },
    onRecovery: (result) => recoveries.push(result),
    onTokenError: (error) => tokenErrors.push(error.message),
  });
  const { socket } = live;
  sockets.add(socket);
  const received = [];
  socket.on("message", (payload, meta) => {
    received.push({ text: payload.text, recovered: meta?.recovered === true, position: meta?.position });
  });
  await until(() => socket.connected, "the recovery.js socket");
  const out = (results.recovery_js = { position_after_connect: live.position });

  await post(alice, "rjs before", erin.id);
  await until(() => received.length === 1, "the first message");
  // Drop; the first token request of the reconnection fails on the network, the next
  // one is answered 429; the one after (socket.io-client's retries) is held while
  // messages are sent.
  gate = deferred();
  const busy = Object.assign(new Error("socket token: HTTP 429"), { status: 429 });
  failures.push(new TypeError("fetch failed"), busy);
  const calls = tokenCalls;
  socket.io.engine.close();
  await until(() => !socket.connected && tokenCalls > calls + 2, "the retried reconnection");
  for (let i = 0; i < 5; i += 1) await post(alice, `rjs gap ${i}`, erin.id);
  gate.resolve();
  gate = null;
  await until(() => received.length === 6, "the recovered messages");
  await post(alice, "rjs after", erin.id);
  await until(() => received.length === 7, "a live message after the recovery");
  await sleep(QUIET_MS);

  out.recoveries = recoveries;
  out.token_errors = tokenErrors;
  out.received = received.map(({ text, recovered }) => ({ text, recovered }));
  out.position_is_the_last_received = live.position === received[received.length - 1].position;
  out.last_recovery = live.lastRecovery;
  live.close();
  sockets.delete(socket);
  return out;
}

// 4. recovery.js when the server refuses the token request (a revoked or bad JWT):
// the handshake fails with INVALID_TOKEN and the socket stops retrying.
async function refusedToken() {
  const TransomRecovery = createRequire(import.meta.url)(RECOVERY_JS);
  const errors = [];
  const live = TransomRecovery.connect(io, {
    url: BASE,
    socketOptions: { transports: ["websocket"], forceNew: true, ...RECONNECT },
    fetchToken: TransomRecovery.tokenFetcher(() => "not-a-jwt", `${BASE}/api/v1/user/sockettoken`),
    onTokenError: (error) => errors.push({ message: error.message, status: error.status }),
  });
  sockets.add(live.socket);
  const refusal = await new Promise((resolve) => {
    live.socket.once("connect_error", (error) => resolve(error.message));
  });
  await sleep(QUIET_MS);
  const out = { refusal, errors, active: live.socket.active, connected: live.socket.connected };
  live.close();
  sockets.delete(live.socket);
  return out;
}

async function main() {
  results.client_version = createRequire(import.meta.url)("socket.io-client/package.json").version;
  const [alice, bob, carol, erin] = await Promise.all(["alice", "bob", "carol", "erin"].map(newUser));
  results.users = { alice: alice.id, bob: bob.id, carol: carol.id, erin: erin.id };

  results.drop = await dropAndRecover(alice, bob, carol);

  const bad = {
    malformed: "not-a-position",
    unknown: "99999999999999-0",
    long: "7".repeat(300),
    number: 42,
    object: { $gt: "" },
  };
  results.bad_positions = {};
  for (const [name, position] of Object.entries(bad)) {
    results.bad_positions[name] = await badPosition(alice, bob, position);
  }

  results.recovery_js = await withRecoveryJs(alice, erin);
  results.refused_token = await refusedToken();
}

main().then(
  () => {
    clearTimeout(watchdog);
    finish(0);
  },
  (error) => {
    clearTimeout(watchdog);
    finish(1, error);
  },
);
