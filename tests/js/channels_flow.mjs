// Channels with the real JS client, socket.io-client 4 under node, against one running
// app or two processes of one deployment sharing Redis (A and B):
//  1. subscribe acknowledged, refused (forbidden, invalid_channel);
//  2. a channel message posted through A and through B reaches exactly the subscribed
//     sockets, on both processes; unsubscribe stops it;
//  3. join and leave reach only the channel's subscribers, once; a user moving from B
//     to A within the grace period is neither left nor joined; a leave comes after
//     the grace period; the presence endpoint lists the members to those who may join;
//  4. a socket whose transport drops (socket.io.engine.close()) reconnects to the
//     OTHER process with its channels and position: `recovery` first, with the
//     channels it got back, then the channel messages it missed, once, in order;
//  5. (with an administrator) a user taken out of a group is disconnected, and gets
//     back only the channels still allowed.
//
// usage: node channels_flow.mjs http://A [http://B]
//   env: GRACE_MS (the app's PRESENCE_GRACE_SECONDS in ms, default 3000),
//        ADMIN_USERNAME and ADMIN_PASSWORD (step 5; skipped without them)
//
// Prints one JSON object of observations on stdout; tests/test_js_channels.py asserts
// on it. Exits non-zero only when the flow itself could not run.
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { io } from "socket.io-client";

import { restClient, signUpVerified } from "./harness.mjs";

const trim = (url) => (url || "").replace(/\/+$/, "");
const BASE_A = trim(process.argv[2]);
const BASE_B = trim(process.argv[3]) || BASE_A;
if (!/^https?:\/\//.test(BASE_A) || !/^https?:\/\//.test(BASE_B)) {
  console.error("usage: node channels_flow.mjs http://127.0.0.1:PORT [http://127.0.0.1:PORT2]");
  process.exit(2);
}
const GRACE_MS = Number(process.env.GRACE_MS || 3000);
const ADMIN = process.env.ADMIN_USERNAME
  ? { username: process.env.ADMIN_USERNAME, password: process.env.ADMIN_PASSWORD }
  : null;

const STEP_TIMEOUT_MS = 20000 + 3 * GRACE_MS; // one expected event or state
const WATCHDOG_MS = 110000; // under run_node's own timeout
const RECONNECT = { reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 };

const results = { bases: { a: BASE_A, b: BASE_B, two_processes: BASE_A !== BASE_B } };
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

const rest = { a: restClient(BASE_A), b: restClient(BASE_B) };
const side = (base) => (base === BASE_B && BASE_B !== BASE_A ? rest.b : rest.a);

async function login(username, password) {
  const { token } = await rest.a.apiOk("POST", "/api/v1/user/login", { body: { username, password } });
  return token;
}

// Signed up and verified through its mail (on A: the outbox is the process's own).
async function newUser(label) {
  const suffix = randomBytes(4).toString("hex");
  const { user, username, password } = await signUpVerified(BASE_A, `ch_${label}_${suffix}`);
  return { label, id: user._id, username, password, jwt: await login(username, password) };
}

const socketToken = (base, user) => side(base).apiOk("POST", "/api/v1/user/sockettoken", { jwt: user.jwt });

async function post(base, author, body) {
  const { message } = await side(base).apiOk("POST", "/api/v1/db/message", { jwt: author.jwt, body }, 201);
  return message;
}

// A connected socket of `user` on `base` that records every event it gets, in order.
async function connect(base, user, extraAuth = {}) {
  const { token } = await socketToken(base, user);
  const socket = io(base, {
    transports: ["websocket"],
    forceNew: true,
    reconnection: false,
    auth: { token, ...extraAuth },
  });
  sockets.add(socket);
  socket.user = user;
  socket.log = [];
  socket.onAny((event, ...args) => socket.log.push({ event, args }));
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", (error) => reject(new Error(`connect_error ${error.message}`)));
  });
  return socket;
}

const call = (socket, event, ...args) => socket.timeout(STEP_TIMEOUT_MS).emitWithAck(event, ...args);
const texts = (socket) =>
  socket.log.filter((e) => e.event === "message" && !e.args[0].text.startsWith("sentinel")).map((e) => e.args[0].text);
const presenceEvents = (socket) =>
  socket.log
    .filter((e) => e.event === "join" || e.event === "leave")
    .map((e) => ({ event: e.event, channel: e.args[0].channel, user: e.args[0].user.username, fields: Object.keys(e.args[0].user).sort() }));
const hasText = (socket, text) => socket.log.some((e) => e.event === "message" && e.args[0].text === text);

// Every message posted before has reached these sockets: a direct message posted after
// it, through A and B alternately, has.
async function delivered(sender, ...targets) {
  let n = 0;
  for (const socket of targets) {
    const text = `sentinel ${randomBytes(4).toString("hex")}`;
    await post(n % 2 ? BASE_B : BASE_A, sender, { text, to: socket.user.id });
    await until(() => hasText(socket, text), `the sentinel of ${socket.user.label}`);
    n += 1;
  }
}

// 1. Subscribe: allowed and refused.
async function subscribing(alice) {
  const socket = await connect(BASE_A, alice);
  const out = {};
  out.allowed = await call(socket, "subscribe", { channel: "room:js" });
  out.again = await call(socket, "subscribe", { channel: "room:js" });
  out.forbidden = await call(socket, "subscribe", { channel: "group:admin" });
  out.invalid = {};
  const bad = {
    unknown_pattern: { channel: "nope:x" },
    space: { channel: "room:bad name" },
    too_long: { channel: `room:${"x".repeat(101)}` },
    number: { channel: 5 },
    operator: { channel: { $gt: "" } },
    extra_key: { channel: "room:js", x: 1 },
  };
  for (const [name, body] of Object.entries(bad)) out.invalid[name] = await call(socket, "subscribe", body);
  out.no_body = await call(socket, "subscribe");
  out.unsubscribe_unknown = await call(socket, "unsubscribe", { channel: "room:never" });
  out.unsubscribe = await call(socket, "unsubscribe", { channel: "room:js" });
  out.connected_after = socket.connected;
  socket.disconnect();
  sockets.delete(socket);
  return out;
}

// 2 and 3. Delivery and presence across the processes.
async function deliveryAndPresence(users) {
  const { alice, bob, carol, dave, erin } = users;
  const out = {};
  const aliceA = await connect(BASE_A, alice);
  const carolA = await connect(BASE_A, carol);
  const daveB = await connect(BASE_B, dave);
  const bobB = await connect(BASE_B, bob);
  out.acks = [
    await call(aliceA, "subscribe", { channel: "room:js" }),
    await call(carolA, "subscribe", { channel: "room:other" }),
    await call(bobB, "subscribe", { channel: "room:js" }),
  ];
  await until(() => presenceEvents(aliceA).length === 1, "Bob's join");

  await post(BASE_A, erin, { text: "js via A", channel: "room:js" });
  await post(BASE_B, erin, { text: "js via B", channel: "room:js" });
  await post(BASE_B, erin, { text: "other via B", channel: "room:other" });
  await delivered(erin, aliceA, bobB, carolA, daveB);
  out.delivered = { alice: texts(aliceA), bob: texts(bobB), carol: texts(carolA), dave: texts(daveB) };
  out.channel_field = aliceA.log.find((e) => e.event === "message").args[0].channel;
  out.trailing_position = aliceA.log.filter((e) => e.event === "message").every((e) => typeof e.args[1]?.position === "string");

  // Erin joins on B, then moves to A within the grace period (a reload): her socket on
  // B goes, one on A subscribes. The move's time, as the client sees it, bounds what
  // the servers see (a move slower than the grace is a leave and a join again).
  const erinB = await connect(BASE_B, erin);
  await call(erinB, "subscribe", { channel: "room:js" });
  await until(() => presenceEvents(aliceA).length === 2, "Erin's join");
  const erinA = await connect(BASE_A, erin);
  const moveStarted = Date.now();
  erinB.disconnect();
  sockets.delete(erinB);
  out.erin_back = await call(erinA, "subscribe", { channel: "room:js" });
  out.erin_move_ms = Date.now() - moveStarted;

  // Bob unsubscribes on B: no more messages; his leave comes after the grace period,
  // which also ends Erin's (begun before).
  const unsubscribedAt = Date.now();
  out.bob_unsubscribe = await call(bobB, "unsubscribe", { channel: "room:js" });
  await post(BASE_A, erin, { text: "after unsubscribe", channel: "room:js" });
  await delivered(erin, bobB, aliceA);
  out.bob_after_unsubscribe = texts(bobB);
  await until(
    () => presenceEvents(aliceA).some((e) => e.event === "leave" && e.user === bob.username),
    "Bob's leave",
  );
  out.leave_after_ms = Date.now() - unsubscribedAt;
  await delivered(erin, aliceA, carolA, daveB);
  out.presence_events = {
    alice: presenceEvents(aliceA),
    carol: presenceEvents(carolA),
    dave: presenceEvents(daveB),
    bob: presenceEvents(bobB),
  };

  // The presence endpoint, on both processes.
  out.members = {};
  for (const [name, base] of [["a", BASE_A], ["b", BASE_B]]) {
    const { status, data } = await side(base).api("GET", "/api/v1/channels/room:js/presence", { jwt: carol.jwt });
    out.members[name] = { status, usernames: (data?.presence?.members || []).map((m) => m.username).sort() };
  }
  const forbidden = await rest.a.api("GET", "/api/v1/channels/group:admin/presence", { jwt: carol.jwt });
  out.presence_forbidden = { status: forbidden.status, code: forbidden.data?.error?.code };
  const invalid = await rest.b.api("GET", `/api/v1/channels/${encodeURIComponent("room:a b")}/presence`, { jwt: carol.jwt });
  out.presence_invalid = { status: invalid.status, code: invalid.data?.error?.code };
  out.usernames = { alice: alice.username, bob: bob.username, erin: erin.username };
  for (const socket of [aliceA, carolA, daveB, bobB, erinA]) {
    socket.disconnect();
    sockets.delete(socket);
  }
  return out;
}

// 4. A dropped transport; the reconnection lands on the other process.
async function dropAndRecover(gina, erin) {
  const out = { auth_sent: [] };
  let lastPosition = null;
  let gate = null;
  let authCalls = 0;
  let base = BASE_A;
  const socket = io(BASE_A, {
    transports: ["websocket"],
    forceNew: true,
    ...RECONNECT,
    auth: (callback) => {
      authCalls += 1;
      (async () => {
        if (gate) await gate.promise;
        const answer = await socketToken(base, gina);
        if (lastPosition === null) lastPosition = answer.position;
        const auth = { token: answer.token, position: lastPosition, channels: ["room:js", "group:admin", "nope:x"] };
        out.auth_sent.push({ base, position: auth.position });
        callback(auth);
      })().catch((error) => {
        out.auth_error = String(error);
        callback({});
      });
    },
  });
  sockets.add(socket);
  socket.user = gina;
  socket.log = [];
  socket.onAny((event, ...args) => {
    if (event === "message" && typeof args[1]?.position === "string") lastPosition = args[1].position;
    socket.log.push({ event, args });
  });
  const disconnects = [];
  socket.on("disconnect", (reason) => disconnects.push(reason));
  await until(() => socket.connected, "Gina's connection");
  await until(() => socket.log.some((e) => e.event === "recovery"), "the first recovery");
  out.first_recovery = socket.log.find((e) => e.event === "recovery").args[0];

  await post(BASE_A, erin, { text: "r before", channel: "room:js" });
  await until(() => hasText(socket, "r before"), "the first message");

  gate = deferred();
  const calls = authCalls;
  const mark = socket.log.length;
  base = BASE_B;
  socket.io.uri = BASE_B; // the next connection goes to the other process
  socket.io.engine.close();
  await until(() => disconnects.length === 1, "the disconnect");
  out.disconnect_reason = disconnects[0];
  await until(() => authCalls > calls, "the reconnection attempt");
  const expected = [];
  for (let i = 0; i < 10; i += 1) {
    const text = `r gap ${i}`;
    await post(i % 2 ? BASE_B : BASE_A, erin, { text, channel: "room:js" });
    expected.push(text);
    if (i === 4) await post(BASE_B, erin, { text: "not for gina", channel: "room:other" });
  }
  gate.resolve();
  gate = null;
  for (let i = 0; i < 6; i += 1) {
    const text = `r during ${i}`;
    await post(i % 2 ? BASE_A : BASE_B, erin, { text, channel: "room:js" });
    expected.push(text);
  }
  await until(() => expected.every((text) => hasText(socket, text)), "every missed message");
  await delivered(erin, socket);
  out.expected = expected;
  out.after_drop = socket.log.slice(mark).map((e) => ({
    event: e.event,
    text: e.event === "message" ? e.args[0].text : null,
    payload: e.event === "recovery" ? e.args[0] : null,
  }));
  out.engine_port = String(socket.io.engine.port ?? "");
  out.port_b = new URL(BASE_B).port;
  out.connected_after = socket.connected;
  socket.disconnect();
  sockets.delete(socket);
  return out;
}

// 5. Rights lost: an administrator takes the user out of the group.
async function lostRights(harry, erin) {
  const admin = { label: "admin", jwt: await login(ADMIN.username, ADMIN.password) };
  const setGroups = (groups) =>
    rest.b.apiOk("PUT", `/api/v1/admin/users/${harry.id}/groups`, { jwt: admin.jwt, body: { groups } });
  const out = {};
  await setGroups(["staff"]);
  harry.jwt = await login(harry.username, harry.password);
  const channels = ["group:staff", "room:js"];
  const first = await connect(BASE_A, harry, { channels, position: "none" });
  await until(() => first.log.some((e) => e.event === "recovery"), "the first recovery");
  out.first_recovery = first.log.find((e) => e.event === "recovery").args[0];
  await post(BASE_B, harry, { text: "staff 1", channel: "group:staff" });
  await until(() => hasText(first, "staff 1"), "the staff message");
  const position = first.log.filter((e) => e.event === "message").at(-1).args[1].position;
  const disconnected = new Promise((resolve) => first.once("disconnect", resolve));
  await setGroups([]);
  out.disconnect_reason = await Promise.race([disconnected, sleep(STEP_TIMEOUT_MS).then(() => "still connected")]);
  sockets.delete(first);
  const staffAuthor = { jwt: admin.jwt };
  // The administrator is no member of staff: refused. A room message while Harry is away.
  out.admin_to_staff = (await rest.a.api("POST", "/api/v1/db/message", { jwt: staffAuthor.jwt, body: { text: "x", channel: "group:staff" } })).status;
  await post(BASE_B, erin, { text: "room while away", channel: "room:js" });

  harry.jwt = await login(harry.username, harry.password);
  const back = await connect(BASE_A, harry, { channels, position });
  await until(() => hasText(back, "room while away"), "the replayed room message");
  out.back_recovery = back.log.find((e) => e.event === "recovery").args[0];
  out.back_first_event = back.log[0].event;
  out.back_subscribe_staff = await call(back, "subscribe", { channel: "group:staff" });
  await delivered(erin, back);
  out.back_texts = texts(back);
  back.disconnect();
  sockets.delete(back);
  return out;
}

async function main() {
  results.client_version = createRequire(import.meta.url)("socket.io-client/package.json").version;
  const names = ["alice", "bob", "carol", "dave", "erin", "gina", "harry"];
  const made = await Promise.all(names.map(newUser));
  const users = Object.fromEntries(made.map((user) => [user.label, user]));
  results.subscribe = await subscribing(users.alice);
  results.delivery = await deliveryAndPresence(users);
  results.recovery = await dropAndRecover(users.gina, users.erin);
  results.lost_rights = ADMIN ? await lostRights(users.harry, users.erin) : null;
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
