// The accounts of the demo page of a running generated app, driven in headless Chromium
// (the Debian package) through playwright-core, as a new user walks through them: sign
// up, find the verification mail in the page's development outbox panel, follow its
// link (/verify?token=...), log in, log out; "Forgot password?", the reset mail in the
// outbox, its link (/reset?token=...), a new password, log in with it (the old one is
// refused); then change the password while logged in, the page's socket reconnecting.
// A full-page screenshot of the page with its outbox is saved.
//
// usage: node account_flow.mjs http://127.0.0.1:PORT /path/to/demo-accounts.png
//
// Prints one JSON object of observations on stdout; tests/test_demo_accounts.py asserts
// on it. Exits non-zero only when the flow itself could not run.
import { randomBytes } from "node:crypto";
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM, CHROMIUM_ARGS, flowEnding, pageFlowArguments, restClient } from "./harness.mjs";

const { base: BASE, screenshot: SCREENSHOT } = pageFlowArguments("account_flow.mjs");

const STEP_TIMEOUT_MS = 15000;
const WATCHDOG_MS = 100000;

const results = {};
let browser = null;

const { finish, watchdog } = flowEnding(results, WATCHDOG_MS, () => browser);
const { api } = restClient(BASE);

// One tab, watched for errors across its navigations (a mail's link loads the page anew).
async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1000, height: 1000 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const seen = {
    console_errors: [],
    page_errors: [],
    failed_requests: [],
    http_errors: [],
    csp_violations: [],
    documents: [], // every page load: {path, status, csp}
  };
  page.on("console", (message) => {
    if (message.type() === "error") seen.console_errors.push(message.text());
  });
  page.on("pageerror", (error) => seen.page_errors.push(String(error)));
  page.on("requestfailed", (request) => {
    seen.failed_requests.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
  });
  page.on("response", (response) => {
    const request = response.request();
    const path = new URL(response.url()).pathname;
    if (response.status() >= 400) seen.http_errors.push(`${response.status()} ${request.method()} ${path}`);
    if (request.resourceType() === "document") {
      const csp = response.headers()["content-security-policy"] ?? null;
      seen.documents.push({ path, status: response.status(), csp });
    }
  });
  await page.exposeFunction("__cspViolation", (text) => seen.csp_violations.push(text));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (event) => {
      window.__cspViolation(`${event.violatedDirective} ${event.blockedURI}`);
    });
  });
  return { page, seen };
}

const text = async (page, selector) => ((await page.textContent(selector)) ?? "").trim();

// The outbox panel lists `count` mails of this kind (newest first). The page looks again
// by itself after each request that mails; a person would press Refresh if it had not.
async function mailListed(page, kind, count = 1) {
  const selector = `#outbox-mail li[data-kind="${kind}"]`;
  const listed = () =>
    page.waitForFunction(
      ([wanted, n]) => document.querySelectorAll(wanted).length >= n,
      [selector, count],
      { timeout: STEP_TIMEOUT_MS },
    );
  try {
    await listed();
  } catch {
    await page.click("#outbox-refresh");
    await listed();
  }
  const item = page.locator(selector).first();
  return item.evaluate((li) => ({
    count: document.querySelectorAll(`#outbox-mail li[data-kind="${li.dataset.kind}"]`).length,
    subject: li.querySelector(".subject").textContent.trim(),
    meta: li.querySelector(".meta").textContent.trim(),
    body: li.querySelector(".body").textContent,
    links: [...li.querySelectorAll(".body a")].map((a) => a.getAttribute("href")),
  }));
}

// Open the link of the newest mail of this kind, as a click in the outbox panel; the
// address it opened.
async function followMailLink(page, kind) {
  const link = page.locator(`#outbox-mail li[data-kind="${kind}"] .body a`).first();
  const opened = page.waitForResponse((response) => response.request().resourceType() === "document");
  await link.click();
  const { pathname, search } = new URL((await opened).url());
  await page.waitForLoadState("load");
  return { path: pathname, has_token: new URLSearchParams(search).has("token") };
}

async function logIn(page, email, password) {
  await page.fill("#email", email);
  await page.fill("#username", "");
  await page.fill("#password", password);
  await page.click("#login");
}

async function sessionShown(page) {
  await page.waitForSelector("#session:not([hidden])");
  await page.waitForFunction(() => document.querySelector("#me-id").textContent.trim() !== "");
  const authFormHidden = await page.locator("#auth-form").isHidden();
  return { me_name: await text(page, "#me-name"), auth_form_hidden: authFormHidden };
}

// Sign up, try to log in before verifying (refused: the page offers to resend the mail),
// resend, follow the newest verification link, log in, log out.
async function signUpAndVerify(page, account) {
  const out = {};
  await page.goto(`${BASE}/`, { waitUntil: "load" });
  await page.waitForSelector("#outbox:not([hidden])");
  out.outbox_shown = true;
  await page.fill("#email", account.email);
  await page.fill("#username", account.username);
  await page.fill("#password", account.password);
  await page.click("#signup");
  await page.waitForSelector('#account-status[data-state="done"]');
  out.signup_status = await text(page, "#account-status");
  out.session_hidden_after_signup = await page.locator("#session").isHidden();
  out.mail = await mailListed(page, "verify");

  await page.click("#login");
  await page.waitForSelector('#account-status[data-state="warning"]');
  out.unverified_status = await text(page, "#account-status");
  out.resend_shown = await page.locator("#resend").isVisible();
  out.session_hidden_unverified = await page.locator("#session").isHidden();
  await page.click("#resend");
  await page.waitForSelector('#account-status[data-state="done"]');
  out.resend_status = await text(page, "#account-status");
  out.resend_hidden_after = await page.locator("#resend").isHidden();
  out.resent = await mailListed(page, "verify", 2);

  out.verify_link = await followMailLink(page, "verify");
  await page.waitForSelector('#link-status[data-state="done"]');
  out.verify_title = await text(page, "#link-title");
  out.verify_status = await text(page, "#link-status");
  out.address_after_verify = new URL(page.url()).pathname + new URL(page.url()).search;
  out.outbox_address_kept = await page.inputValue("#outbox-to");

  await logIn(page, account.email, account.password);
  out.session = await sessionShown(page);
  await page.click("#logout");
  await page.waitForSelector("#auth-form:not([hidden])");
  out.logged_out = await page.locator("#session").isHidden();
  return out;
}

// Forgot password: the reset mail, its link, a new password; the link works once.
async function resetPassword(page, account, newPassword) {
  const out = {};
  await page.click("#forgot");
  await page.waitForSelector("#forgot-form:not([hidden])");
  out.forgot_email_prefilled = await page.inputValue("#forgot-email");
  await page.fill("#forgot-email", account.email);
  await page.click("#forgot-submit");
  await page.waitForSelector('#account-status[data-state="done"]');
  out.forgot_status = await text(page, "#account-status");
  out.forgot_form_hidden = await page.locator("#forgot-form").isHidden();
  out.mail = await mailListed(page, "reset");

  out.reset_link = await followMailLink(page, "reset");
  await page.waitForSelector("#reset-form:not([hidden])");
  out.reset_title = await text(page, "#link-title");
  await page.fill("#reset-password", newPassword);
  await page.click("#reset-submit");
  await page.waitForSelector('#link-status[data-state="done"]');
  out.reset_status = await text(page, "#link-status");
  out.reset_form_hidden = await page.locator("#reset-form").isHidden();
  out.address_after_reset = new URL(page.url()).pathname + new URL(page.url()).search;
  out.changed_mail = await mailListed(page, "password_changed");

  // The same link again: its token was used.
  await page.goto(out.mail.links[0], { waitUntil: "load" });
  await page.fill("#reset-password", `pw-${randomBytes(8).toString("hex")}`);
  await page.click("#reset-submit");
  await page.waitForSelector('#link-status[data-state="error"]');
  out.reused_link_status = await text(page, "#link-status");
  await page.goto(`${BASE}/`, { waitUntil: "load" });
  return out;
}

// The old password is refused, the new one logs in.
async function logInAfterReset(page, account, newPassword) {
  const out = {};
  await logIn(page, account.email, account.password);
  await page.waitForFunction(() => document.querySelector("#notice").textContent.trim() !== "");
  out.old_password_notice = await text(page, "#notice");
  out.old_password_session_hidden = await page.locator("#session").isHidden();
  await logIn(page, account.email, newPassword);
  out.session = await sessionShown(page);
  out.notice_after = await text(page, "#notice");
  return out;
}

// Change the password while connected: the server closes the account's sockets and the
// page connects again with a fresh socket token; the session's JWT stays valid.
async function changePassword(page, account, current, next) {
  const out = {};
  let tokens = 0; // socket tokens the page asked for: one per (re)connection
  page.on("request", (request) => {
    if (new URL(request.url()).pathname === "/api/v1/user/sockettoken") tokens += 1;
  });
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="connected"]');
  const before = tokens;
  await page.fill("#current-password", current);
  await page.fill("#new-password", next);
  await page.click("#change-password");
  await page.waitForSelector('#account-status[data-state="done"]');
  out.status = await text(page, "#account-status");
  await page.waitForSelector('#status[data-state="connected"]');
  out.socket_status = await text(page, "#status");
  out.new_socket_tokens = tokens - before;
  out.fields_cleared = [await page.inputValue("#current-password"), await page.inputValue("#new-password")];
  const jwt = await page.evaluate(() => sessionStorage.getItem("jwt"));
  out.jwt_still_valid = (await api("GET", "/api/v1/user/me", { jwt })).status === 200;
  const login = (password) =>
    api("POST", "/api/v1/user/login", { body: { username: account.email, password } });
  out.login_with_previous = (await login(current)).status;
  out.login_with_changed = (await login(next)).status;
  out.changed_mails = (await mailListed(page, "password_changed", 2)).count;
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

  const username = `acc_${randomBytes(4).toString("hex")}`;
  const password = `pw-${randomBytes(8).toString("hex")}`;
  const account = { username, email: `${username}@example.com`, password };
  const newPassword = `new-${randomBytes(8).toString("hex")}`;
  const changedPassword = `changed-${randomBytes(8).toString("hex")}`;
  results.account = { username, email: account.email };

  const { page, seen } = await openPage();
  results.page = seen;
  results.verify = await signUpAndVerify(page, account);
  results.reset = await resetPassword(page, account, newPassword);
  results.after_reset = await logInAfterReset(page, account, newPassword);
  results.change = await changePassword(page, account, newPassword, changedPassword);
  seen.notice = await text(page, "#notice");

  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
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
