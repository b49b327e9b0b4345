// The demo page at "/" of a running generated app, driven in headless Chromium
// (the Debian package) through playwright-core: two users on two pages sign up,
// connect through the UI, one sends a broadcast and a direct message, the other
// page shows them live. A full-page screenshot of the receiving page is saved.
//
// usage: node demo_page.mjs http://127.0.0.1:PORT /path/to/demo-page.png
//
// Prints one JSON object of observations on stdout; tests/test_demo_page.py
// asserts on it. Exits non-zero only when the flow itself could not run.
import { randomBytes } from "node:crypto";
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";
import { io } from "socket.io-client";

import {
  CHROMIUM,
  CHROMIUM_ARGS,
  flowEnding,
  pageFlowArguments,
  signUpVerified,
  verifyEmail,
} from "./harness.mjs";

const { base: BASE, screenshot: SCREENSHOT } = pageFlowArguments("demo_page.mjs");

// The app's MAX_SOCKETS_PER_USER (the test starts it with the same value).
const MAX_SOCKETS = Number.parseInt(process.env.MAX_SOCKETS_PER_USER || "20", 10);
const STEP_TIMEOUT_MS = 10000;
const WATCHDOG_MS = 75000;

const results = { pages: {} };
let browser = null;

const { finish, watchdog } = flowEnding(results, WATCHDOG_MS, () => browser);

// One user's tab in its own browser context (own storage, like another person).
async function openPage(label) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const seen = {
    console_errors: [],
    console_warnings: [],
    page_errors: [],
    failed_requests: [],
    http_errors: [],
    websockets: [],
  };
  results.pages[label] = seen;
  page.on("console", (message) => {
    const where = message.location()?.url ? ` (${message.location().url.replace(BASE, "")})` : "";
    if (message.type() === "error") seen.console_errors.push(`${message.text()}${where}`);
    if (message.type() === "warning") seen.console_warnings.push(message.text());
  });
  page.on("pageerror", (error) => seen.page_errors.push(String(error)));
  page.on("requestfailed", (request) => {
    seen.failed_requests.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) seen.http_errors.push(`${response.status()} ${response.url()}`);
  });
  page.on("websocket", (ws) => seen.websockets.push(ws.url().replace(BASE, "")));
  // Content-Security-Policy violations, as the page itself sees them.
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (event) => {
      window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
    });
  });

  const response = await page.goto(`${BASE}/`, { waitUntil: "load" });
  seen.status = response.status();
  seen.content_type = response.headers()["content-type"] ?? null;
  seen.csp = response.headers()["content-security-policy"] ?? null;
  seen.title = await page.title();
  seen.io_loaded = await page.evaluate(() => typeof window.io === "function");
  return { label, context, page, seen };
}

// The sender signs up through the form, verifies its address with the link of the mail
// (tests/js/account_flow.mjs follows it in the page) and logs in; the receiver's account
// exists already and it logs in with its email and password.
async function signUpAndConnect(tab) {
  const { page, seen } = tab;
  const username = `pw_${tab.label}_${randomBytes(3).toString("hex")}`;
  const email = `${username}@example.com`;
  await page.fill("#email", email);
  await page.fill("#username", username);
  await page.fill("#password", `pw-${randomBytes(8).toString("hex")}`);
  await page.click("#signup");
  seen.username = username;
  await page.waitForSelector('#account-status[data-state="done"]');
  await verifyEmail(BASE, email);
  await page.click("#login");
  await sessionShown(tab);
  await connect(tab);
}

async function logInAndConnect(tab) {
  const { page, seen } = tab;
  const account = `pw_${tab.label}_${randomBytes(3).toString("hex")}`;
  const { username, email, password } = await signUpVerified(BASE, account);
  await page.fill("#email", email);
  await page.fill("#password", password);
  await page.click("#login");
  seen.username = username;
  await sessionShown(tab);
  await connect(tab);
}

async function sessionShown(tab) {
  const { page, seen } = tab;
  await page.waitForSelector("#session:not([hidden])");
  await page.waitForFunction(() => document.querySelector("#me-id").textContent.trim() !== "");
  seen.me_name = (await page.textContent("#me-name")).trim();
  seen.me_id = (await page.textContent("#me-id")).trim();
  seen.auth_form_hidden = await page.locator("#auth-form").isHidden();
}

async function connect(tab) {
  const { page, seen } = tab;
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="connected"]');
  seen.status_text = (await page.textContent("#status")).trim();
  seen.connect_disabled = await page.isDisabled("#connect");
  seen.disconnect_enabled = await page.isEnabled("#disconnect");
}

async function send(tab, text, to = "") {
  const { page } = tab;
  await page.fill("#text", text);
  await page.fill("#to", to);
  await page.click("#send");
  // The sender's own page lists what it sent (from the REST answer or the socket).
  await page.waitForFunction(
    (wanted) => [...document.querySelectorAll("#messages li .text")].some((el) => el.textContent === wanted),
    text,
  );
  // The socket may show it before the POST's answer, after which the page clears the box.
  try {
    await page.waitForFunction(() => document.querySelector("#text").value === "", null, {
      timeout: STEP_TIMEOUT_MS,
    });
  } catch {
    // left as it is: the test reports what the box still holds
  }
  return page.evaluate(() => document.querySelector("#text").value);
}

// Wait until the page shows a message with this text, and describe it.
async function arrived(tab, text) {
  const handle = await tab.page.waitForFunction(
    (wanted) =>
      [...document.querySelectorAll("#messages li")].find(
        (li) => li.querySelector(".text")?.textContent === wanted,
      ),
    text,
  );
  const found = await handle.evaluate((li) => ({
    id: li.dataset.id,
    live: li.dataset.live,
    text: li.querySelector(".text").textContent,
    meta: li.querySelector(".meta").textContent,
    direct_class: li.querySelector(".meta").classList.contains("direct"),
    text_child_elements: li.querySelector(".text").children.length,
  }));
  await handle.dispose();
  return found;
}

async function openSocketsFor(jwt, count) {
  const opened = [];
  for (let i = 0; i < count; i += 1) {
    const response = await fetch(`${BASE}/api/v1/user/sockettoken`, {
      method: "POST",
      headers: { Authorization: `Bearer ${jwt}` },
    });
    const { token } = await response.json();
    const socket = io(BASE, { transports: ["websocket"], reconnection: false, forceNew: true, auth: { token } });
    opened.push(socket);
    await new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", (error) => reject(new Error(`extra socket ${i}: ${error.message}`)));
    });
  }
  return opened;
}

async function refusedThenRetry(tab) {
  const { page } = tab;
  const out = {};
  await page.click("#disconnect");
  await page.waitForSelector('#status[data-state="disconnected"]');
  const jwt = await page.evaluate(() => sessionStorage.getItem("jwt"));
  const others = await openSocketsFor(jwt, MAX_SOCKETS);
  try {
    await page.click("#connect");
    await page.waitForSelector('#status[data-state="error"]');
    out.refused_status = (await page.textContent("#status")).trim();
  } finally {
    for (const socket of others) socket.disconnect();
  }
  await new Promise((resolve) => setTimeout(resolve, 1000)); // the server drops them
  out.connect_enabled_after_refusal = await page.isEnabled("#connect");
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="connected"]');
  out.retry_status = (await page.textContent("#status")).trim();
  return out;
}

async function main() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30000,
  });
  results.browser_version = browser.version();

  const sender = await openPage("sender");
  const receiver = await openPage("receiver");
  await signUpAndConnect(sender);
  await logInAndConnect(receiver);

  const stamp = randomBytes(3).toString("hex");
  // Markup in a message is shown as text, never interpreted.
  const broadcastText = `Hello <b>everyone</b> & <img src=x> from the sender (${stamp})`;
  const directText = `A direct hello to the receiver (${stamp})`;

  results.text_after_send = await send(sender, broadcastText);
  results.broadcast = await arrived(receiver, broadcastText);
  await send(sender, directText, receiver.seen.me_id);
  results.direct = await arrived(receiver, directText);
  results.sender_sees_direct = await arrived(sender, directText);

  // Disconnect and connect again through the UI: a fresh one-time token is used.
  await receiver.page.click("#disconnect");
  await receiver.page.waitForSelector('#status[data-state="disconnected"]');
  await connect(receiver);
  const afterText = `After the receiver reconnected (${stamp})`;
  await send(sender, afterText);
  results.after_reconnect = await arrived(receiver, afterText);
  results.receiver_status_after_reconnect = (await receiver.page.textContent("#status")).trim();

  // A refused handshake: the receiver's user already holds every socket allowed
  // (other tabs, here real socket.io-client sockets). The page shows the refusal,
  // and Connect works again once those sockets are closed.
  results.refused_then_retry = await refusedThenRetry(receiver);

  for (const tab of [sender, receiver]) {
    tab.seen.notice = (await tab.page.textContent("#notice")).trim();
    tab.seen.csp_violations = await tab.page.evaluate(() => window.__cspViolations);
    tab.seen.message_count = await tab.page.locator("#messages li").count();
  }

  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await receiver.page.screenshot({ path: SCREENSHOT, fullPage: true });
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
