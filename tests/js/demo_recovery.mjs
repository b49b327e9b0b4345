// The demo page recovers what it missed while its connection was cut (issue 16), in
// headless Chromium (the Debian package) through playwright-core. A person logs in and
// connects; their connection is cut for real (the page's "Drop the connection" button
// closes the transport, as a network failure would); while the page reconnects, another
// user sends messages through the API (the page's socket-token request is held, so the
// messages are sent while it is away); then:
//  1. within the window: the page shows every message once, in order, marked recovered;
//  2. window exceeded (more messages than RECOVERY_MAX_MESSAGES while away): the page
//     says recovery was incomplete and reloads the list through the REST API.
//  3. the page's Disconnect then Connect: what was sent in between is recovered too.
// Every Socket.IO event the page receives (polling and websocket) is recorded too, so
// "once" is checked on the wire, not only in the list (which is keyed by message id).
//
// usage: node demo_recovery.mjs http://127.0.0.1:PORT /path/to/screenshot.png
//
// Prints one JSON object of observations on stdout; tests/test_demo_recovery.py asserts
// on it. Exits non-zero only when the flow itself could not run.
import { randomBytes } from "node:crypto";
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

import {
  CHROMIUM,
  CHROMIUM_ARGS,
  flowEnding,
  pageFlowArguments,
  restClient,
  signUpVerified,
} from "./harness.mjs";

const { base: BASE, screenshot: SCREENSHOT } = pageFlowArguments("demo_recovery.mjs");

// The app's RECOVERY_MAX_MESSAGES (the test starts it with the same value).
const WINDOW = Number.parseInt(process.env.RECOVERY_MAX_MESSAGES || "60", 10);
const GAP_MESSAGES = 8;
const STEP_TIMEOUT_MS = 15000;
const QUIET_MS = 600;
const WATCHDOG_MS = 100000;

const results = {};
let browser = null;

const { finish, watchdog } = flowEnding(results, WATCHDOG_MS, () => browser);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

async function until(predicate, what) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const { apiOk } = restClient(BASE);

// Signed up and verified through its mail (login waits for the verification).
async function newAccount(label) {
  const { user, username, email, password } = await signUpVerified(
    BASE,
    `pwrec_${label}_${randomBytes(3).toString("hex")}`,
  );
  return { id: user._id, username, email, password };
}

async function post(author, text, to) {
  const body = to ? { text, to } : { text };
  const { message } = await apiOk("POST", "/api/v1/db/message", { jwt: author.jwt, body }, 201);
  return message;
}

// Socket.IO EVENT packets ("42[...]") from a polling response body or a websocket frame.
function eventsIn(payload) {
  const out = [];
  for (const packet of String(payload).split("\x1e")) {
    if (!packet.startsWith("42")) continue;
    try {
      const [event, first] = JSON.parse(packet.slice(2));
      const id = first && first._id ? first._id : null;
      out.push({ event, id, payload: event === "recovery" ? first : null });
    } catch {
      // not JSON: not an event of ours
    }
  }
  return out;
}

async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1000, height: 1000 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const seen = {
    console_errors: [],
    page_errors: [],
    failed_requests: [],
    http_errors: [],
    wire: [], // Socket.IO events received, in order
    requests: [], // the page's API requests, in order
  };
  page.on("console", (message) => {
    if (message.type() === "error") seen.console_errors.push(message.text());
  });
  page.on("pageerror", (error) => seen.page_errors.push(String(error)));
  page.on("requestfailed", (request) => {
    seen.failed_requests.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
  });
  page.on("request", (request) => {
    const path = request.url().replace(BASE, "");
    if (path.startsWith("/api/")) seen.requests.push(`${request.method()} ${path}`);
  });
  page.on("response", async (response) => {
    if (response.status() >= 400) seen.http_errors.push(`${response.status()} ${response.url()}`);
    if (response.url().includes("/socket.io/") && response.request().method() === "GET") {
      try {
        seen.wire.push(...eventsIn(await response.text()));
      } catch {
        // a body gone with its page
      }
    }
  });
  page.on("websocket", (ws) => {
    ws.on("framereceived", ({ payload }) => seen.wire.push(...eventsIn(payload)));
  });
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (event) => {
      window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
    });
  });
  // The socket-token requests, which a test can hold to keep the page away.
  const tokens = { requests: 0, gate: null };
  await context.route("**/api/v1/user/sockettoken", async (route) => {
    tokens.requests += 1;
    if (tokens.gate) await tokens.gate.promise;
    await route.continue();
  });
  await page.goto(`${BASE}/`, { waitUntil: "load" });
  return { page, seen, tokens };
}

// The list as the person sees it, top (newest) first.
function listed(page) {
  return page.$$eval("#messages li", (items) =>
    items.map((li) => ({
      id: li.dataset.id,
      text: li.querySelector(".text").textContent,
      live: li.dataset.live,
      recovered: li.dataset.recovered,
      tag: li.querySelector(".meta .tag")?.textContent ?? null,
    })),
  );
}

async function shows(page, text) {
  await page.waitForFunction(
    (wanted) => [...document.querySelectorAll("#messages li .text")].some((el) => el.textContent === wanted),
    text,
  );
}

// Cut the connection with the page's button; hold its reconnection at the token request.
async function cut(tab) {
  const { page, tokens } = tab;
  tokens.gate = deferred();
  const before = tokens.requests;
  const wireMark = tab.seen.wire.length;
  const requestMark = tab.seen.requests.length;
  await page.click("#drop");
  await page.waitForSelector('#status[data-state="disconnected"]');
  const status = (await page.textContent("#status")).trim();
  await until(() => tokens.requests > before, "the page's reconnection attempt");
  return { status, wireMark, requestMark };
}

function restore(tab) {
  tab.tokens.gate.resolve();
  tab.tokens.gate = null;
}

async function main() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30000,
  });
  results.browser_version = browser.version();

  // The other user only uses the API.
  const sender = await newAccount("sender");
  const login = { username: sender.username, password: sender.password };
  sender.jwt = (await apiOk("POST", "/api/v1/user/login", { body: login })).token;
  const person = await newAccount("person");
  results.person = person.id;

  const tab = await openPage();
  const { page, seen } = tab;
  results.page = seen;
  await page.fill("#email", person.email);
  await page.fill("#password", person.password);
  await page.click("#login");
  await page.waitForSelector("#session:not([hidden])");
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="connected"]');
  const stamp = randomBytes(3).toString("hex");

  const first = await post(sender, `before the cut (${stamp})`);
  await shows(page, first.text);

  // 1. Cut, messages while away, restore: recovered, once, in order.
  const cut1 = await cut(tab);
  const gap = [];
  for (let i = 0; i < GAP_MESSAGES; i += 1) {
    gap.push(await post(sender, `while away ${i} (${stamp})`, i % 2 ? person.id : undefined));
  }
  results.status_while_away = cut1.status;
  restore(tab);
  await page.waitForSelector('#recovery[data-state="complete"]');
  await page.waitForSelector('#status[data-state="connected"]');
  for (const message of gap) await shows(page, message.text);
  const after = await post(sender, `after the reconnection (${stamp})`);
  await shows(page, after.text);
  await sleep(QUIET_MS);
  results.within = {
    sent: gap.map((m) => m._id),
    first: first._id,
    after: after._id,
    note: (await page.textContent("#recovery")).trim(),
    list: await listed(page),
    wire: seen.wire.slice(cut1.wireMark),
    requests: seen.requests.slice(cut1.requestMark),
  };
  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  results.screenshot = { path: SCREENSHOT, bytes: statSync(SCREENSHOT).size };

  // 2. Window exceeded: more messages while away than the server keeps.
  const cut2 = await cut(tab);
  const flood = [];
  for (let i = 0; i < 2 * WINDOW; i += 1) flood.push(await post(sender, `flood ${i} (${stamp})`, person.id));
  restore(tab);
  await page.waitForSelector('#recovery[data-state="incomplete"]');
  await page.waitForSelector('#status[data-state="connected"]');
  await shows(page, flood[flood.length - 1].text);
  const live = await post(sender, `live after the reload (${stamp})`);
  await shows(page, live.text);
  await sleep(QUIET_MS);
  results.exceeded = {
    sent: flood.map((m) => m._id),
    live: live._id,
    note: (await page.textContent("#recovery")).trim(),
    list: await listed(page),
    wire: seen.wire.slice(cut2.wireMark),
    requests: seen.requests.slice(cut2.requestMark),
  };

  // 3. The page's own Disconnect, then Connect: the new socket goes on from the last
  // position, so what was sent in between is recovered too.
  const wireMark = seen.wire.length;
  await page.click("#disconnect");
  await page.waitForSelector('#status[data-state="disconnected"]');
  const between = [];
  for (let i = 0; i < 2; i += 1) {
    between.push(await post(sender, `between disconnect and connect ${i} (${stamp})`));
  }
  await page.click("#connect");
  await page.waitForSelector('#recovery[data-state="complete"]');
  for (const message of between) await shows(page, message.text);
  await sleep(QUIET_MS);
  results.reconnect_button = {
    sent: between.map((m) => m._id),
    note: (await page.textContent("#recovery")).trim(),
    list: await listed(page),
    wire: seen.wire.slice(wireMark),
  };
  seen.notice = (await page.textContent("#notice")).trim();
  seen.csp_violations = await page.evaluate(() => window.__cspViolations);
}

main().then(
  async () => {
    clearTimeout(watchdog);
    await finish(0);
  },
  async (error) => {
    clearTimeout(watchdog);
    await finish(1, error);
  },
);
