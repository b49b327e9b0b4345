// The demo client: REST for the account and messages, Socket.IO for live delivery.
// Plain JavaScript with the socket.io-client 4 served by the app (static/vendor).
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const state = { jwt: sessionStorage.getItem("jwt"), me: null, socket: null };

  function notice(text) {
    $("notice").textContent = text || "";
  }

  function setStatus(text, kind) {
    $("status").textContent = text;
    $("status").dataset.state = kind;
  }

  async function api(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (state.jwt) headers.Authorization = `Bearer ${state.jwt}`;
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json();
    if (!response.ok) {
      const error = new Error(data && data.error ? data.error.message : response.statusText);
      error.code = data && data.error ? data.error.code : "http_error";
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // A fresh one-time token for every (re)connection: a token works only once.
  async function fetchSocketToken() {
    const { token } = await api("POST", "/api/v1/user/sockettoken");
    return token;
  }

  function credentials() {
    const email = $("email").value.trim();
    const username = $("username").value.trim();
    return { email, username, password: $("password").value };
  }

  async function signup() {
    const { email, username, password } = credentials();
    const body = { email, password };
    if (username) body.username = username;
    await api("POST", "/api/v1/user/signup", body);
    await login();
  }

  async function login() {
    const { email, username, password } = credentials();
    const { token } = await api("POST", "/api/v1/user/login", { username: username || email, password });
    state.jwt = token;
    sessionStorage.setItem("jwt", token);
    await showSession();
  }

  async function showSession() {
    const { me } = await api("GET", "/api/v1/user/me");
    state.me = me;
    $("me-name").textContent = me.username;
    $("me-id").textContent = me._id;
    $("auth-form").hidden = true;
    $("session").hidden = false;
    $("connect").disabled = false;
    $("send").disabled = false;
    await loadHistory();
  }

  async function logout() {
    try {
      await api("POST", "/api/v1/user/logout");
    } finally {
      disconnect();
      state.jwt = null;
      state.me = null;
      sessionStorage.removeItem("jwt");
      $("auth-form").hidden = false;
      $("session").hidden = true;
      $("connect").disabled = true;
      $("send").disabled = true;
      $("messages").replaceChildren();
      $("online").replaceChildren();
      knownUsers.clear();
    }
  }

  function connect() {
    if (state.socket) return;
    setStatus("connecting…", "connecting");
    const socket = io({
      transports: document.body.dataset.transports.split(","),
      // Called on the first connection and on every reconnection.
      auth: (callback) => {
        fetchSocketToken()
          .then((token) => callback({ token }))
          .catch((error) => {
            setStatus(`error: ${error.message}`, "error");
            callback({});
          });
      },
    });
    socket.on("connect", () => {
      setStatus("connected", "connected");
      refreshPresence().catch((error) => notice(error.message));
      $("connect").disabled = true;
      $("disconnect").disabled = false;
    });
    socket.on("connect_error", (error) => {
      setStatus(`error: ${error.message}`, "error");
      // The server refused the handshake (INVALID_TOKEN...): the client does not
      // retry by itself, so let Connect start over with a fresh token. A network
      // failure leaves the socket active: it keeps retrying on its own.
      if (!socket.active) {
        socket.disconnect();
        if (state.socket === socket) forgetSocket();
      }
    });
    socket.on("disconnect", (reason) => {
      setStatus(`disconnected (${reason})`, "disconnected");
      if (reason === "io server disconnect") forgetSocket(); // the server closed it: no retry
    });
    socket.on("message", (message) => showMessage(message, true));
    socket.on("presence", (event) => {
      knownUsers.set(event.user._id, event.user);
      showPresence(event.user, event.online);
    });
    state.socket = socket;
  }

  function forgetSocket() {
    state.socket = null;
    $("connect").disabled = !state.jwt;
    $("disconnect").disabled = true;
  }

  function disconnect() {
    if (!state.socket) return;
    state.socket.disconnect();
    forgetSocket();
    setStatus("disconnected", "disconnected");
  }

  // Who is online: the users this page knows of (message authors, presence events),
  // checked through GET /api/v1/presence on each (re)connection, then kept live by the
  // server's `presence` events (a user's first socket in, last socket out).
  function showPresence(user, online) {
    if (state.me && user._id === state.me._id) return;
    let item = document.querySelector(`#online li[data-id="${user._id}"]`);
    if (!item) {
      item = document.createElement("li");
      item.dataset.id = user._id;
      $("online").append(item);
    }
    item.dataset.online = online ? "true" : "false";
    item.textContent = `${user.username} — ${online ? "online" : "offline"}`;
  }

  const knownUsers = new Map();

  async function refreshPresence() {
    const ids = [...knownUsers.keys()].slice(0, 100);
    if (!ids.length) return;
    const { presence } = await api("GET", `/api/v1/presence?users=${ids.join(",")}`);
    for (const [id, { online }] of Object.entries(presence)) showPresence(knownUsers.get(id), online);
  }

  function showMessage(message, live) {
    if (message.author && message.author._id) knownUsers.set(message.author._id, message.author);
    if (document.querySelector(`#messages li[data-id="${message._id}"]`)) return;
    const item = document.createElement("li");
    item.dataset.id = message._id;
    item.dataset.live = live ? "true" : "false";
    const meta = document.createElement("div");
    meta.className = "meta";
    const when = new Date(message.created_at).toLocaleTimeString();
    const scope = message.to ? "direct" : "everyone";
    meta.textContent = `${message.author.username} → ${scope} · ${when}`;
    if (message.to) meta.classList.add("direct");
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = message.text;
    item.append(meta, text);
    $("messages").prepend(item);
  }

  async function loadHistory() {
    const { messages } = await api("GET", "/api/v1/db/message?limit=20");
    messages.reverse().forEach((message) => showMessage(message, false));
  }

  async function send(event) {
    event.preventDefault();
    const body = { text: $("text").value };
    const to = $("to").value.trim();
    if (to) body.to = to;
    const { message } = await api("POST", "/api/v1/db/message", body);
    $("text").value = "";
    showMessage(message, false);
  }

  // Every action reports its error in the notice line instead of failing silently.
  const guarded = (action) => async (event) => {
    if (event && event.type === "submit") event.preventDefault();
    notice("");
    try {
      await action(event);
    } catch (error) {
      notice(error.message);
    }
  };

  $("signup").addEventListener("click", guarded(signup));
  $("auth-form").addEventListener("submit", guarded(login));
  $("logout").addEventListener("click", guarded(logout));
  $("connect").addEventListener("click", guarded(connect));
  $("disconnect").addEventListener("click", guarded(disconnect));
  $("message-form").addEventListener("submit", guarded(send));

  // A reload keeps the session of this tab, unless the JWT expired or was revoked.
  if (state.jwt) {
    showSession().catch(() => {
      state.jwt = null;
      sessionStorage.removeItem("jwt");
    });
  }
})();
