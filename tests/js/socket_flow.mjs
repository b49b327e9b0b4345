// The handshake and message flow of a running generated app, driven by the real
// JS client (socket.io-client 4 from the npm registry) over the websocket transport.
//
// usage: node socket_flow.mjs http://127.0.0.1:PORT
//
// Prints one JSON object of observations on stdout; the pytest side
// (tests/test_js_client.py) asserts on it. Exits non-zero only when the flow
// itself could not run (the app unreachable, a watchdog timeout...); then the
// JSON has an "error" and whatever was observed before it.
import { randomBytes } from "node:crypto";
import { io } from "socket.io-client";

import { restClient, signUpVerified } from "./harness.mjs";

const BASE = (process.argv[2] || "").replace(/\/+$/, "");
if (!/^https?:\/\//.test(BASE)) {
  console.error("usage: node socket_flow.mjs http://127.0.0.1:PORT");
  process.exit(2);
}

const STEP_TIMEOUT_MS = 5000; // one connection or one expected event
const QUIET_MS = 600; // how long "nobody else got it" is watched for
const WATCHDOG_MS = 60000; // the whole flow

const results = { client_version: null };
const sockets = new Set();

function finish(code, error) {
  if (error) results.error = String(error && error.stack ? error.stack : error);
  for (const socket of sockets) socket.disconnect();
  process.stdout.write(`${JSON.stringify(results)}\n`);
  // Let stdout drain before leaving; open sockets must not keep node alive.
  setTimeout(() => process.exit(code), 50).unref();
}

const watchdog = setTimeout(() => finish(1, `watchdog: flow not done in ${WATCHDOG_MS} ms`), WATCHDOG_MS);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const { api, apiOk } = restClient(BASE);

// Signed up and verified through its mail (login waits for the verification).
async function newUser(label) {
  const suffix = randomBytes(4).toString("hex");
  const { user, username, password } = await signUpVerified(BASE, `js_${label}_${suffix}`);
  const login = await apiOk("POST", "/api/v1/user/login", { body: { username, password } }, 200);
  return { label, id: user._id, username, jwt: login.token };
}

async function socketToken(user) {
  const { token } = await apiOk("POST", "/api/v1/user/sockettoken", { jwt: user.jwt }, 200);
  return token;
}

// Open a socket and wait for the outcome: {connected, id} or {connected: false, error, data}.
// The socket is kept (for events) when it connects; options go straight to io().
function open(options) {
  const socket = io(BASE, {
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
    timeout: STEP_TIMEOUT_MS,
    ...options,
  });
  sockets.add(socket);
  socket.received = [];
  socket.on("message", (payload) => socket.received.push(payload));
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      resolve({ socket, outcome: { connected: false, error: `no answer in ${STEP_TIMEOUT_MS} ms` } });
    }, STEP_TIMEOUT_MS + 500);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve({ socket, outcome: { connected: true, id: socket.id } });
    });
    socket.once("connect_error", (error) => {
      clearTimeout(timer);
      socket.disconnect();
      sockets.delete(socket);
      resolve({
        socket,
        outcome: { connected: false, error: error.message, data: error.data ?? null },
      });
    });
  });
}

// Wait until every socket got a message with this _id (or the step timeout).
async function waitFor(socketsByName, messageId) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  const got = () =>
    Object.values(socketsByName).every((s) => s.received.some((m) => m._id === messageId));
  while (!got() && Date.now() < deadline) await sleep(20);
}

function delivered(socketsByName, messageId) {
  const out = {};
  for (const [name, socket] of Object.entries(socketsByName)) {
    out[name] = socket.received.filter((m) => m._id === messageId).length;
  }
  return out;
}

async function main() {
  // The client's own version, to show which socket.io-client ran.
  const { createRequire } = await import("node:module");
  const require = createRequire(import.meta.url);
  results.client_version = require("socket.io-client/package.json").version;

  const [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map(newUser));
  results.users = { alice: alice.id, bob: bob.id, carol: carol.id };

  // 1. auth payload and query string.
  const authToken = await socketToken(alice);
  const viaAuth = await open({ auth: { token: authToken } });
  results.connect_auth = viaAuth.outcome;

  const queryToken = await socketToken(bob);
  const viaQuery = await open({ query: { token: queryToken } });
  results.connect_query = viaQuery.outcome;

  // 2. every refusal path answers INVALID_TOKEN.
  const refusals = {};
  refusals.reused_auth = (await open({ auth: { token: authToken } })).outcome;
  refusals.reused_query = (await open({ query: { token: queryToken } })).outcome;
  refusals.unknown = (await open({ auth: { token: randomBytes(32).toString("base64url") } })).outcome;
  refusals.unknown_query = (await open({ query: { token: "not-a-token" } })).outcome;
  refusals.missing = (await open({})).outcome;
  refusals.empty_auth = (await open({ auth: {} })).outcome;
  refusals.empty_string = (await open({ auth: { token: "" } })).outcome;
  refusals.null_token = (await open({ auth: { token: null } })).outcome;
  refusals.number_token = (await open({ auth: { token: 12345 } })).outcome;
  refusals.array_token = (await open({ auth: { token: [await socketToken(carol)] } })).outcome;
  refusals.operator_token = (await open({ auth: { token: { $ne: null } } })).outcome;
  refusals.object_token = (await open({ auth: { token: { token: await socketToken(carol) } } })).outcome;
  results.refusals = refusals;

  // 3. one token, several simultaneous handshakes: exactly one connects.
  const raceToken = await socketToken(carol);
  const race = await Promise.all(
    Array.from({ length: 10 }, () => open({ auth: { token: raceToken } })),
  );
  results.race = race.map((r) => (r.outcome.connected ? "connected" : r.outcome.error));
  for (const r of race) if (r.outcome.connected) r.socket.disconnect();

  // 4. a direct message reaches every tab of the addressee and the author, nobody else.
  const tabs = {
    alice: viaAuth.socket,
    bob_tab1: viaQuery.socket,
    bob_tab2: (await open({ auth: { token: await socketToken(bob) } })).socket,
    carol: (await open({ auth: { token: await socketToken(carol) } })).socket,
  };
  results.tabs_connected = Object.fromEntries(
    Object.entries(tabs).map(([name, socket]) => [name, socket.connected]),
  );
  const direct = await apiOk("POST", "/api/v1/db/message", {
    jwt: alice.jwt,
    body: { text: "hello bob, from the JS client", to: bob.id },
  }, 201);
  const directId = direct.message._id;
  await waitFor({ alice: tabs.alice, bob_tab1: tabs.bob_tab1, bob_tab2: tabs.bob_tab2 }, directId);
  await sleep(QUIET_MS);
  results.direct = {
    stored: direct.message,
    delivered: delivered(tabs, directId),
    payload: tabs.bob_tab1.received.find((m) => m._id === directId) ?? null,
  };

  // 5. a broadcast reaches everyone.
  const broadcast = await apiOk("POST", "/api/v1/db/message", {
    jwt: carol.jwt,
    body: { text: "hello everyone, from the JS client" },
  }, 201);
  const broadcastId = broadcast.message._id;
  await waitFor(tabs, broadcastId);
  await sleep(QUIET_MS);
  results.broadcast = {
    stored: broadcast.message,
    delivered: delivered(tabs, broadcastId),
    payload: tabs.alice.received.find((m) => m._id === broadcastId) ?? null,
  };

  // 6. reconnecting: the spent token is refused, a fresh one connects and receives.
  tabs.alice.disconnect();
  tabs.alice.connect(); // same static auth: the token was consumed at the first handshake
  results.reconnect_same_token = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ connected: false, error: "no answer" }), STEP_TIMEOUT_MS);
    tabs.alice.once("connect", () => {
      clearTimeout(timer);
      resolve({ connected: true });
    });
    tabs.alice.once("connect_error", (error) => {
      clearTimeout(timer);
      resolve({ connected: false, error: error.message });
    });
  });
  tabs.alice.disconnect();

  // The way the demo page reconnects: auth as a function that fetches a fresh token
  // for every (re)connection, with the client's own reconnection on.
  let tokensFetched = 0;
  const fresh = await open({
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 200,
    auth: (callback) => {
      tokensFetched += 1;
      socketToken(alice).then((token) => callback({ token }), () => callback({}));
    },
  });
  const firstId = fresh.socket.id;
  const reconnected = new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), STEP_TIMEOUT_MS);
    fresh.socket.io.once("reconnect", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  fresh.socket.io.engine.close(); // the transport drops: the client reconnects by itself
  const didReconnect = await reconnected;
  await sleep(50);
  const again = await apiOk("POST", "/api/v1/db/message", {
    jwt: bob.jwt,
    body: { text: "after the reconnection", to: alice.id },
  }, 201);
  await waitFor({ alice: fresh.socket }, again.message._id);
  results.reconnect_fresh_token = {
    first: fresh.outcome,
    reconnected: didReconnect,
    connected: fresh.socket.connected,
    new_sid: fresh.socket.id !== firstId,
    tokens_fetched: tokensFetched,
    delivered: fresh.socket.received.filter((m) => m._id === again.message._id).length,
  };
  fresh.socket.io.reconnection(false);

  // 7. logout disconnects the sockets opened with that JWT (the server closes them).
  const closed = {};
  const bobClosed = ["bob_tab1", "bob_tab2"].map(
    (name) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => resolve(), STEP_TIMEOUT_MS);
        tabs[name].once("disconnect", (reason) => {
          clearTimeout(timer);
          closed[name] = reason;
          resolve();
        });
      }),
  );
  await apiOk("POST", "/api/v1/user/logout", { jwt: bob.jwt }, 200);
  await Promise.all(bobClosed);
  await sleep(100);
  results.logout = {
    reasons: closed,
    carol_still_connected: tabs.carol.connected,
    sockettoken_after_logout: (await api("POST", "/api/v1/user/sockettoken", { jwt: bob.jwt })).status,
  };
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
