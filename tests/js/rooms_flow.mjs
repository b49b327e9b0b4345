// The demo page's rooms (channels room:<name>), in headless Chromium (the Debian package)
// through playwright-core, with two people in two browser contexts:
//  1. both join room:lobby through the page; each sees the other in its member list (the
//     first from the join event, the second from GET .../presence);
//  2. one talks in the lobby, the other sees it live in the lobby's view;
//  3. the first joins room:other, which the second does not, and talks there: the second
//     page gets nothing of it (checked on the wire), while the lobby still works;
//  4. the second page's connection is cut (its socket-token request held) while the first
//     talks in the lobby: it comes back in the lobby (auth.channels) and shows what was
//     said meanwhile, recovered; then it talks there, seen live by the first;
//  5. the second leaves the lobby: the first sees them leave after the grace period;
//     they join again (seen live), then close their page: seen leaving again.
// Every Socket.IO event each page receives (polling and websocket) is recorded.
//
// usage: node rooms_flow.mjs http://127.0.0.1:PORT /path/to/screenshot.png
//
// Prints one JSON object of observations on stdout; tests/test_demo_rooms.py asserts on
// it. Exits non-zero only when the flow itself could not run.
import { randomBytes } from "node:crypto";
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM, CHROMIUM_ARGS, flowEnding, pageFlowArguments, signUpVerified } from "./harness.mjs";

const { base: BASE, screenshot: SCREENSHOT } = pageFlowArguments("rooms_flow.mjs");

const LOBBY = "room:lobby";
const OTHER = "room:other";
const STEP_TIMEOUT_MS = 15000;
const WATCHDOG_MS = 110000;

const results = { pages: {} };
let browser = null;

const { finish, watchdog } = flowEnding(results, WATCHDOG_MS, () => browser);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate, what) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

// The last join or leave of `userId` a page's wire carries (a polling body is read
// after the page has handled it: wait for the wire too).
function lastComing(tab, userId) {
  const comings = tab.seen.wire.filter((event) => event.user === userId);
  return comings.length ? comings[comings.length - 1].event : null;
}

function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

// Socket.IO EVENT packets ("42[...]") from a polling response body or a websocket frame:
// the event, and the message id, channel and recovery summary it carries.
function eventsIn(payload) {
  const out = [];
  for (const packet of String(payload).split("\x1e")) {
    if (!packet.startsWith("42")) continue;
    try {
      const [event, first] = JSON.parse(packet.slice(2));
      out.push({
        event,
        id: first && first._id ? first._id : null,
        channel: first && typeof first.channel === "string" ? first.channel : null,
        user: first && first.user ? first.user._id : null,
        payload: event === "recovery" ? first : null,
      });
    } catch {
      // not JSON: not an event of ours
    }
  }
  return out;
}

// One person's tab in a browser context of its own, logged in through the form and
// connected. Its socket-token requests can be held (tokens.gate) to keep it away.
async function openPage(label) {
  const account = await signUpVerified(BASE, `pwroom_${label}_${randomBytes(3).toString("hex")}`);
  const context = await browser.newContext({ viewport: { width: 1000, height: 1000 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const seen = {
    console_errors: [],
    page_errors: [],
    failed_requests: [],
    http_errors: [],
    wire: [],
    username: account.username,
    id: account.user._id,
  };
  results.pages[label] = seen;
  page.on("console", (message) => {
    if (message.type() === "error") seen.console_errors.push(message.text());
  });
  page.on("pageerror", (error) => seen.page_errors.push(String(error)));
  page.on("requestfailed", (request) => {
    // Closing the page aborts its socket's pending long-poll: not a failure of the page.
    if (!seen.closed) {
      seen.failed_requests.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
    }
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
  const tokens = { requests: 0, gate: null };
  await context.route("**/api/v1/user/sockettoken", async (route) => {
    tokens.requests += 1;
    if (tokens.gate) await tokens.gate.promise;
    await route.continue();
  });
  await page.goto(`${BASE}/`, { waitUntil: "load" });
  await page.fill("#email", account.email);
  await page.fill("#password", account.password);
  await page.click("#login");
  await page.waitForSelector("#session:not([hidden])");
  seen.join_disabled_before_connect = await page.isDisabled("#join");
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="connected"]');
  return { label, context, page, seen, tokens, id: account.user._id };
}

const room = (channel) => `.room[data-channel="${channel}"]`;

// The member list of a room as the page shows it: [{id, text}].
function members(tab, channel) {
  return tab.page.$$eval(`${room(channel)} .members li`, (items) =>
    items.map((li) => ({ id: li.dataset.id, text: li.textContent })),
  );
}

// Wait until the page lists (or no longer lists) `userId` among the room's members.
async function memberShown(tab, channel, userId, present = true) {
  const selector = `${room(channel)} .members li[data-id="${userId}"]`;
  await tab.page.waitForFunction(([css, wanted]) => Boolean(document.querySelector(css)) === wanted, [
    selector,
    present,
  ]);
}

async function join(tab, name) {
  await tab.page.fill("#room-name", name);
  await tab.page.click("#join");
  await memberShown(tab, `room:${name}`, tab.id); // subscribed, and the list loaded
}

async function say(tab, channel, text) {
  await tab.page.fill(`${room(channel)} .room-send input`, text);
  await tab.page.click(`${room(channel)} .room-send button`);
  await shown(tab, channel, text);
}

// Wait until the room's view shows a message with this text, and describe it.
async function shown(tab, channel, text) {
  const handle = await tab.page.waitForFunction(
    ([selector, wanted]) =>
      [...document.querySelectorAll(`${selector} .room-messages li`)].find(
        (li) => li.querySelector(".text")?.textContent === wanted,
      ),
    [room(channel), text],
  );
  const found = await handle.evaluate((li) => ({
    id: li.dataset.id,
    live: li.dataset.live,
    recovered: li.dataset.recovered,
    meta: li.querySelector(".meta").textContent,
    text: li.querySelector(".text").textContent,
  }));
  await handle.dispose();
  return found;
}

// Every message text the page shows, in any list or room, and its rooms.
function everything(tab) {
  return tab.page.evaluate(() => ({
    rooms: [...document.querySelectorAll("#room-list .room")].map((el) => el.dataset.channel),
    texts: [...document.querySelectorAll("li .text")].map((el) => el.textContent),
  }));
}

async function main() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30000,
  });
  results.browser_version = browser.version();
  const stamp = randomBytes(3).toString("hex");

  const ada = await openPage("ada");
  const bob = await openPage("bob");
  results.room_name_default = await ada.page.inputValue("#room-name");

  // 1. Both in the lobby, each listing the other.
  await join(ada, "lobby");
  results.ada_alone = await members(ada, LOBBY);
  await join(bob, "lobby");
  await memberShown(bob, LOBBY, ada.id); // from GET .../presence
  await memberShown(ada, LOBBY, bob.id); // from the join event
  results.lobby = { ada_sees: await members(ada, LOBBY), bob_sees: await members(bob, LOBBY) };

  // 2. Talk in the lobby.
  const hello = `Hello the lobby (${stamp})`;
  await say(ada, LOBBY, hello);
  results.lobby_message = await shown(bob, LOBBY, hello);
  results.lobby_message_in_main_list = await bob.page.$$eval("#messages li .text", (els) =>
    els.some((el) => el.textContent.startsWith("Hello the lobby")),
  );

  // 3. Another room, without bob: nothing of it reaches bob's page.
  const bobWire = bob.seen.wire.length;
  await join(ada, "other");
  const secret = `Only for the other room (${stamp})`;
  await say(ada, OTHER, secret);
  const marker = `Back in the lobby (${stamp})`;
  await say(ada, LOBBY, marker);
  await shown(bob, LOBBY, marker); // delivered after the other room's message, if any
  const [adaOther, adaLobbyTexts] = await Promise.all([
    shown(ada, OTHER, secret),
    ada.page.$$eval(`${room(LOBBY)} .room-messages li .text`, (els) => els.map((el) => el.textContent)),
  ]);
  results.other_room = {
    ada_rooms: (await everything(ada)).rooms,
    ada_message: adaOther,
    ada_lobby_texts: adaLobbyTexts,
    ada_members: await members(ada, OTHER),
    bob: await everything(bob),
    bob_wire: bob.seen.wire.slice(bobWire).filter((e) => e.channel === OTHER || e.id === adaOther.id),
  };

  // 4. Bob's connection cut (its reconnection held at the socket token) while ada talks
  // in the lobby: bob's page comes back in the lobby and recovers what was said.
  bob.tokens.gate = deferred();
  const tokensBefore = bob.tokens.requests;
  const cutWire = bob.seen.wire.length;
  await bob.page.click("#drop");
  await bob.page.waitForSelector('#status[data-state="disconnected"]');
  await until(() => bob.tokens.requests > tokensBefore, "bob's page to try to reconnect");
  const missed = [`While bob was away 1 (${stamp})`, `While bob was away 2 (${stamp})`];
  for (const text of missed) await say(ada, LOBBY, text);
  bob.tokens.gate.resolve();
  bob.tokens.gate = null;
  await bob.page.waitForSelector('#status[data-state="connected"]');
  const recovered = [];
  for (const text of missed) recovered.push(await shown(bob, LOBBY, text));
  await memberShown(bob, LOBBY, ada.id); // (loaded again on the reconnection)
  const afterCut = () =>
    bob.seen.wire.slice(cutWire).filter((event) => ["recovery", "message"].includes(event.event));
  await until(() => afterCut().length >= 1 + missed.length, "the recovery on bob's wire");
  results.recovery = {
    wire: afterCut(),
    messages: recovered,
    note: (await bob.page.textContent("#recovery")).trim(),
    bob_members: await members(bob, LOBBY),
  };
  // Bob talks too: ada's socket gets it after the leave and join the cut may have caused
  // (if it outlasted the grace period), so ada's list is settled once it shows.
  const back = `Bob is back (${stamp})`;
  await say(bob, LOBBY, back);
  results.bob_message = await shown(ada, LOBBY, back);
  await memberShown(ada, LOBBY, bob.id);

  // 5. Bob leaves the lobby: ada sees it once the grace period is over.
  let started = Date.now();
  await bob.page.click(`${room(LOBBY)} .leave`);
  await bob.page.waitForSelector(room(LOBBY), { state: "detached" });
  await memberShown(ada, LOBBY, bob.id, false);
  results.leave = {
    elapsed_ms: Date.now() - started,
    ada_members: await members(ada, LOBBY),
    bob_rooms: (await everything(bob)).rooms,
  };
  // Bob joins again (ada sees it live), then closes the page.
  await join(bob, "lobby");
  await memberShown(ada, LOBBY, bob.id);
  results.rejoined = await members(ada, LOBBY);
  for (const tab of [ada, bob]) {
    tab.seen.notice = (await tab.page.textContent("#notice")).trim();
    tab.seen.csp_violations = await tab.page.evaluate(() => window.__cspViolations);
  }
  started = Date.now();
  bob.seen.closed = true;
  await bob.context.close();
  await memberShown(ada, LOBBY, bob.id, false);
  await until(() => lastComing(ada, bob.id) === "leave", "bob's leave on ada's wire");
  results.closed = { elapsed_ms: Date.now() - started, ada_members: await members(ada, LOBBY) };
  ada.seen.notice = (await ada.page.textContent("#notice")).trim();

  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await ada.page.screenshot({ path: SCREENSHOT, fullPage: true });
  results.screenshot = { path: SCREENSHOT, bytes: statSync(SCREENSHOT).size };
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
