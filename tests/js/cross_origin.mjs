// A front end served from another origin, in headless Chromium: its page logs in, reads
// who it is, takes a socket token and opens a socket on the app (CORS_ALLOWED_ORIGINS
// lists that origin); the same page under an origin that is not listed can read nothing.
//
// usage: node cross_origin.mjs http://127.0.0.1:APP_PORT FRONT_END_PORT
// (the app lists http://127.0.0.1:FRONT_END_PORT; http://localhost:FRONT_END_PORT is
// the same server under another origin). Prints one JSON line of what the pages saw.
import { createServer } from "node:http";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, flowEnding, signUpVerified } from "./harness.mjs";

const base = (process.argv[2] || "").replace(/\/+$/, "");
const frontEndPort = Number(process.argv[3]);
if (!/^https?:\/\//.test(base) || !frontEndPort) {
  console.error("usage: node cross_origin.mjs http://127.0.0.1:APP_PORT FRONT_END_PORT");
  process.exit(2);
}

const results = {};
let browser = null;
const { finish, watchdog } = flowEnding(results, 90000, () => browser);

// What the front end's page runs: the whole client side of a login and a socket. (It is
// serialized into the page by page.evaluate, so it cannot use harness.mjs's restClient.)
async function frontEnd({ base, login, password }) {
  const seen = {};
  const call = async (method, path, { jwt, body } = {}) => {
    const headers = { "Content-Type": "application/json" };
    if (jwt) headers.Authorization = `Bearer ${jwt}`;
    const response = await fetch(`${base}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, data: await response.json(), response };
  };
  try {
    const loggedIn = await call("POST", "/api/v1/user/login", { body: { username: login, password } });
    seen.login_status = loggedIn.status;
    seen.request_id_readable = Boolean(loggedIn.response.headers.get("X-Request-ID"));
    const jwt = loggedIn.data.token;
    const me = await call("GET", "/api/v1/user/me", { jwt });
    seen.me = me.data.me && me.data.me.username;
    const refused = await call("GET", "/api/v1/user/me");
    seen.error_code_readable = refused.data.error && refused.data.error.code;
    const { data } = await call("POST", "/api/v1/user/sockettoken", { jwt });
    const socket = window.io(base, { auth: { token: data.token }, reconnection: false });
    seen.socket = await new Promise((resolve) => {
      socket.on("connect", () => resolve("connected"));
      socket.on("connect_error", (error) => resolve(`connect_error: ${error.message}`));
      setTimeout(() => resolve("timed out"), 15000);
    });
    seen.transport = socket.io.engine && socket.io.engine.transport.name;
    socket.disconnect();
  } catch (error) {
    seen.failed = String(error);
  }
  return seen;
}

async function main() {
  const server = createServer((request, response) => {
    response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    response.end("<!doctype html><title>another site</title><p>front end</p>");
  });
  await new Promise((resolve) => server.listen(frontEndPort, "127.0.0.1", resolve));
  server.unref();

  const account = await signUpVerified(base, `front${Date.now() % 1000000}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30000,
  });
  const context = await browser.newContext();
  for (const [label, origin] of [
    ["listed", `http://127.0.0.1:${frontEndPort}`],
    ["unlisted", `http://localhost:${frontEndPort}`],
  ]) {
    const page = await context.newPage();
    await page.goto(`${origin}/`);
    // The Socket.IO client the app serves, loaded cross-origin as a script (no CORS).
    await page.addScriptTag({ url: `${base}/static/vendor/socket.io.min.js` });
    results[label] = await page.evaluate(frontEnd, {
      base,
      login: account.email,
      password: account.password,
    });
    results[label].origin = await page.evaluate(() => window.location.origin);
    await page.close();
  }
  clearTimeout(watchdog);
  await finish(0);
}

main().catch((error) => {
  clearTimeout(watchdog);
  finish(1, error);
});
