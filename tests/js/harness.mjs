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
