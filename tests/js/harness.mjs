// What the node scripts of the template's tests share: the headless Chromium they
// drive and a small JSON client for the app's REST API.

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
