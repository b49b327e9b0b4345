// What the node scripts of the template's tests share: the headless Chromium they
// drive, a small JSON client for the app's REST API, and verified accounts (through the
// development outbox, where the app's mail goes in tests).
import { randomBytes } from "node:crypto";

// Playwright gives the browser a fresh temporary --user-data-dir of its own (removed on
// close); it refuses one in args. Nothing here downloads a browser.
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A JSON client for the app at `base`: api() answers {status, data}; apiOk() the data,
 * or throws unless the status is `expected`. */
export function restClient(base) {
  async function api(method, path, { jwt, body } = {}) {
    const headers = { "Content-Type": "application/json" };
    if (jwt) headers.Authorization = `Bearer ${jwt}`;
    const response = await fetch(`${base}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { raw: text };
    }
    return { status: response.status, data };
  }

  async function apiOk(method, path, options = {}, expected = 200) {
    const { status, data } = await api(method, path, options);
    if (status !== expected) {
      throw new Error(`${method} ${path}: expected ${expected}, got ${status} ${JSON.stringify(data)}`);
    }
    return data;
  }

  return { api, apiOk };
}

/** The newest link of a `kind` mail ("verify", "reset") to `email` in the app's
 * development outbox (GET /dev/mail, newest first), as a URL. Mail goes out in the
 * background: it looks again until the mail is there or `timeoutMs` has passed. */
export async function mailedLink(base, email, kind, timeoutMs = 20000) {
  const { apiOk } = restClient(base);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { mail } = await apiOk("GET", `/dev/mail?to=${encodeURIComponent(email)}`);
    const found = mail.find((one) => one.kind === kind);
    const link = found && found.text.match(/https?:\/\/\S+\?token=\S+/);
    if (link) return new URL(link[0]);
    if (Date.now() > deadline) throw new Error(`no ${kind} mail to ${email} in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Verify `email` as its owner would: the token of the link in its verification mail,
 * posted to /api/v1/user/verify (login answers 403 email_not_verified until then). */
export async function verifyEmail(base, email) {
  const link = await mailedLink(base, email, "verify");
  const body = { token: link.searchParams.get("token") };
  await restClient(base).apiOk("POST", "/api/v1/user/verify", { body });
}

/** A new verified account: sign up, follow the verification mail. `{user, email, password,
 * username}`. */
export async function signUpVerified(base, username) {
  const email = `${username}@example.com`;
  const password = `pw-${randomBytes(8).toString("hex")}`;
  const body = { email, password, username };
  const { user } = await restClient(base).apiOk("POST", "/api/v1/user/signup", { body }, 201);
  await verifyEmail(base, email);
  return { user, email, password, username };
}

/** The app's URL and the screenshot path of a browser flow, from its command line. */
export function pageFlowArguments(script) {
  const base = (process.argv[2] || "").replace(/\/+$/, "");
  const screenshot = process.argv[3];
  if (!/^https?:\/\//.test(base) || !screenshot) {
    console.error(`usage: node ${script} http://127.0.0.1:PORT /path/to/screenshot.png`);
    process.exit(2);
  }
  return { base, screenshot };
}

/** How a browser flow ends, once: close the browser (`currentBrowser()`), print `results`
 * as one JSON line for the Python test, exit with `code`. A watchdog ends a flow that hangs. */
export function flowEnding(results, watchdogMs, currentBrowser) {
  async function finish(code, error) {
    if (error) results.error = String(error && error.stack ? error.stack : error);
    try {
      const browser = currentBrowser();
      if (browser) await browser.close();
    } catch {
      // the browser is gone already
    }
    process.stdout.write(`${JSON.stringify(results)}\n`);
    process.exitCode = code;
    // Let stdout drain before leaving; open sockets must not keep node alive.
    setTimeout(() => process.exit(code), 50).unref();
  }
  const watchdog = setTimeout(() => finish(1, `watchdog: flow not done in ${watchdogMs} ms`), watchdogMs);
  return { finish, watchdog };
}
