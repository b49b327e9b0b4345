// The demo client: REST for the account and messages, Socket.IO for live delivery and
// rooms (channels room:<name>, channels.py). Plain JavaScript with the socket.io-client 4
// served by the app (static/vendor), static/recovery.js, which recovers the messages
// missed while the socket was cut (its rooms' too), and static/outbox.js, the
// development outbox panel (the mail the app sent).
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const state = {
    jwt: sessionStorage.getItem("jwt"),
    me: null,
    socket: null,
    live: null, // the TransomRecovery handle of the socket
    position: null, // the last position received, kept across Disconnect / Connect
    connectedBefore: false,
    reloading: null, // while the list reloads: the socket's messages, shown after it
  };
  // The rooms joined: channel -> {channel, view, members: Map(id -> user), pending}.
  const rooms = new Map();
  const ACK_TIMEOUT_MS = 10000;
  // How often a room past the server's join_leave_limit reloads its members.
  const MEMBERS_POLL_MS = 15000;

  // Login waits for a verified address (REQUIRE_VERIFIED_EMAIL).
  const VERIFY_EMAIL = document.body.dataset.verifyEmail === "true";
  const outbox = TransomOutbox.create({
    url: document.body.dataset.outbox,
    panel: $("outbox"),
    form: $("outbox-form"),
    address: $("outbox-to"),
    list: $("outbox-mail"),
    empty: $("outbox-empty"),
  });

  function notice(text) {
    $("notice").textContent = text || "";
  }

  // A status line: its text and data-state ("done", "pending", "warning", "error").
  function say(id, text, kind) {
    $(id).textContent = text || "";
    $(id).dataset.state = kind || "";
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

  // A fresh one-time token for every (re)connection: a token works only once. Its
  // answer also holds the newest position, where a first connection starts from.
  function fetchSocketToken() {
    return api("POST", "/api/v1/user/sockettoken");
  }

  function credentials() {
    const email = $("email").value.trim();
    const username = $("username").value.trim();
    return { email, username, password: $("password").value };
  }

  // Sign-up mails a verification link; login waits for it unless REQUIRE_VERIFIED_EMAIL
  // is off.
  async function signup() {
    const { email, username, password } = credentials();
    const body = { email, password };
    if (username) body.username = username;
    await api("POST", "/api/v1/user/signup", body);
    if (!VERIFY_EMAIL) return login();
    const sent = `Account created. We mailed a verification link to ${email}: open it, then log in.`;
    say("account-status", sent, "done");
    await outbox.watch(email);
  }

  async function login() {
    const { email, username, password } = credentials();
    let answer;
    try {
      answer = await api("POST", "/api/v1/user/login", { username: username || email, password });
    } catch (error) {
      if (error.code !== "email_not_verified") throw error;
      const wait = "Your email address is not verified yet: open the link we mailed you, or ask for another.";
      say("account-status", wait, "warning");
      $("resend").hidden = false;
      return;
    }
    state.jwt = answer.token;
    sessionStorage.setItem("jwt", answer.token);
    say("account-status", "");
    await showSession();
  }

  async function resendVerification() {
    const email = $("email").value.trim();
    if (!email) throw new Error("Type your email address above, then ask again.");
    await api("POST", "/api/v1/user/verify/resend", { email });
    $("resend").hidden = true;
    const sent = `If ${email} has an account waiting for verification, a new link is on its way.`;
    say("account-status", sent, "done");
    await outbox.watch(email);
  }

  function showForgotForm() {
    $("forgot-email").value = $("email").value.trim();
    $("forgot-form").hidden = false;
    $("forgot-email").focus();
  }

  function hideForgotForm() {
    $("forgot-form").hidden = true;
  }

  async function forgotPassword() {
    const email = $("forgot-email").value.trim();
    await api("POST", "/api/v1/user/forgot", { email });
    hideForgotForm();
    const sent = `If ${email} has an account, we mailed it a link to choose a new password.`;
    say("account-status", sent, "done");
    await outbox.watch(email);
  }

  async function showSession() {
    const { me } = await api("GET", "/api/v1/user/me");
    state.me = me;
    $("me-name").textContent = me.username;
    $("me-id").textContent = me._id;
    $("password-username").value = me.username;
    $("auth-form").hidden = true;
    $("resend").hidden = true;
    hideForgotForm();
    $("session").hidden = false;
    $("connect").disabled = false;
    $("send").disabled = false;
    await loadHistory();
  }

  async function logout() {
    try {
      await api("POST", "/api/v1/user/logout");
    } finally {
      endSession();
    }
  }

  // This tab's side of a session's end (logout, or a password reset that ended them all).
  function endSession() {
    disconnect();
    state.jwt = null;
    state.me = null;
    sessionStorage.removeItem("jwt");
    $("auth-form").hidden = false;
    $("session").hidden = true;
    $("password-form").reset();
    $("connect").disabled = true;
    $("send").disabled = true;
    $("messages").replaceChildren();
    [...rooms.keys()].forEach(closeRoom);
    recoveryNote("");
    state.position = null;
    state.connectedBefore = false;
  }

  // The server ends the account's other sessions and closes its sockets, this page's
  // too: the page connects again with a fresh socket token (its JWT stays valid).
  async function changePassword() {
    const connected = Boolean(state.socket);
    const body = { current_password: $("current-password").value, new_password: $("new-password").value };
    await api("POST", "/api/v1/user/password", body);
    $("current-password").value = "";
    $("new-password").value = "";
    say("account-status", "Password changed: your other sessions were signed out.", "done");
    if (connected) reconnect();
    await outbox.watch(state.me.email);
  }

  // The page at a mail's link (/verify or /reset): the token is in its query string.
  function openLink() {
    const token = new URLSearchParams(window.location.search).get("token");
    if (window.location.pathname === "/verify") return verifyAddress(token);
    if (window.location.pathname === "/reset") return showResetForm(token);
    return Promise.resolve();
  }

  const NO_TOKEN = "This link has no token: open the link of the mail as it is.";

  function showLink(title) {
    $("link-title").textContent = title;
    $("link").hidden = false;
  }

  // Once used, the link's token leaves the address bar (a reload would send it again).
  function forgetLinkToken() {
    window.history.replaceState(null, "", "/");
  }

  async function verifyAddress(token) {
    showLink("Email verification");
    if (!token) return say("link-status", NO_TOKEN, "error");
    say("link-status", "Verifying your email address…", "pending");
    try {
      await api("POST", "/api/v1/user/verify", { token });
    } catch (error) {
      return say("link-status", `Your address was not verified: ${error.message}.`, "error");
    }
    forgetLinkToken();
    say("link-status", "Your email address is verified: you can log in.", "done");
  }

  function showResetForm(token) {
    showLink("Choose a new password");
    if (!token) return say("link-status", NO_TOKEN, "error");
    $("reset-form").dataset.token = token;
    $("reset-form").hidden = false;
    $("reset-password").focus();
  }

  // A reset ends every session of the account, this tab's too if it had one.
  async function resetPassword() {
    const body = { token: $("reset-form").dataset.token, password: $("reset-password").value };
    say("link-status", "Setting the new password…", "pending");
    try {
      await api("POST", "/api/v1/user/reset", body);
    } catch (error) {
      return say("link-status", `The password was not changed: ${error.message}.`, "error");
    }
    $("reset-form").hidden = true;
    $("reset-form").reset();
    forgetLinkToken();
    if (state.jwt) endSession();
    const done = "Your password was changed and every session of your account signed out: log in with it.";
    say("link-status", done, "done");
    await outbox.watch();
  }

  function connect() {
    if (state.socket) return;
    setStatus("connecting…", "connecting");
    // A fresh token on every (re)connection, sent with the last position received.
    const live = TransomRecovery.connect(io, {
      socketOptions: { transports: document.body.dataset.transports.split(",") },
      fetchToken: fetchSocketToken,
      position: state.position,
      // The rooms it is in come back with every reconnection (auth.channels).
      channels: () => [...rooms.keys()],
      onRecovery: showRecovery,
      onTokenError: (error) => setStatus(`error: ${error.message}`, "error"),
    });
    const socket = live.socket;
    socket.on("connect", () => {
      setStatus("connected", "connected");
      for (const room of rooms.values()) loadMembers(room).catch((error) => notice(error.message));
      $("connect").disabled = true;
      $("disconnect").disabled = false;
      $("drop").disabled = false;
      $("join").disabled = false;
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
      if (state.socket !== socket) return; // replaced already (reconnect)
      setStatus(`disconnected (${reason})`, "disconnected");
      $("drop").disabled = true;
      $("join").disabled = true;
      if (reason === "io server disconnect") forgetSocket(); // the server closed it: no retry
    });
    // meta: the trailing {position}; recovery.js marks the replayed messages.
    socket.on("message", (message, meta) => {
      received(message, meta && meta.recovered ? "recovered" : "live");
    });
    socket.on("join", (event) => memberEvent(event, true));
    socket.on("leave", (event) => memberEvent(event, false));
    socket.on("channel_presence", ({ channel, join_leave }) => {
      const room = rooms.get(channel);
      if (!room) return;
      followMembers(room, join_leave);
      if (join_leave) loadMembers(room).catch((error) => notice(error.message));
    });
    state.socket = socket;
    state.live = live;
  }

  function forgetSocket() {
    if (state.live) state.position = state.live.position;
    state.socket = null;
    state.live = null;
    $("connect").disabled = !state.jwt;
    $("disconnect").disabled = true;
    $("drop").disabled = true;
    $("join").disabled = true;
  }

  function disconnect() {
    if (!state.socket) return;
    state.socket.disconnect();
    forgetSocket();
    setStatus("disconnected", "disconnected");
  }

  // A new socket in place of this one (a fresh token, from the last position received).
  function reconnect() {
    disconnect();
    connect();
  }

  // What a network failure does: the transport closes under the socket, which
  // reconnects by itself (a fresh token, the last position) and recovers what it missed.
  function dropConnection() {
    if (state.socket && state.socket.io.engine) state.socket.io.engine.close();
  }

  function recoveryNote(text, kind) {
    $("recovery").textContent = text;
    $("recovery").dataset.state = kind || "";
  }

  // The server's answer to a (re)connection with a position: how many missed messages
  // it replays (they follow, marked recovered), or that it could not replay them all;
  // and which of the rooms it asked back it is in again (a refused one is closed).
  function showRecovery({ complete, count, channels }) {
    for (const [channel, back] of Object.entries(channels || {})) {
      if (back || !rooms.has(channel)) continue;
      closeRoom(channel);
      notice(`You are no longer in ${channel}: you may not join it now.`);
    }
    const plural = count === 1 ? "message" : "messages";
    if (!complete) {
      recoveryNote(
        "Recovery was incomplete: some messages sent while you were disconnected could not be " +
          "replayed. The message list was reloaded.",
        "incomplete",
      );
      reloadMessages().catch((error) => notice(error.message));
    } else if (count > 0) {
      recoveryNote(`Recovered ${count} ${plural} sent while you were disconnected.`, "complete");
    } else if (state.connectedBefore) {
      recoveryNote("Reconnected: no message was missed.", "complete");
    }
    state.connectedBefore = true; // the first connection's answer is no reconnection
  }

  // Rooms: the socket subscribes to room:<name>; its members come from
  // GET /api/v1/channels/<channel>/presence, then live from the `join` and `leave` events
  // (a member's first socket in, their last one out after the grace period); its
  // messages are those posted with `channel`. Past the pattern's join_leave_limit (100
  // members by default) the server stops join and leave in that room and says so (the
  // subscribe ack's `presence.join_leave`, then a `channel_presence` event at each
  // switch): the list is then reloaded every MEMBERS_POLL_MS instead.
  async function joinRoom() {
    const channel = `room:${$("room-name").value.trim()}`;
    if (rooms.has(channel)) return;
    const room = openRoom(channel); // before the ack: the room's first messages have a place
    const ack = await state.socket
      .timeout(ACK_TIMEOUT_MS)
      .emitWithAck("subscribe", { channel })
      .catch(() => ({ ok: false, error: { message: "no answer from the server" } }));
    if (!ack.ok) {
      closeRoom(channel);
      throw new Error(`Could not join ${channel}: ${ack.error.message}`);
    }
    followMembers(room, !ack.presence || ack.presence.join_leave !== false);
    await loadMembers(room);
  }

  // Left at once here; the socket unsubscribes if connected (a reconnecting one does not
  // ask for the room back).
  async function leaveRoom(channel) {
    closeRoom(channel);
    const socket = state.socket;
    if (!socket || !socket.connected) return;
    const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("unsubscribe", { channel });
    if (!ack.ok) throw new Error(`Could not leave ${channel}: ${ack.error.message}`);
  }

  function openRoom(channel) {
    const view = $("room-template").content.firstElementChild.cloneNode(true);
    view.dataset.channel = channel;
    view.querySelector(".room-name").textContent = channel;
    const room = { channel, view, members: new Map(), pending: null, joinLeave: true, poll: null };
    view.querySelector(".leave").addEventListener("click", guarded(() => leaveRoom(channel)));
    view.querySelector(".room-send").addEventListener("submit", guarded(() => sendToRoom(room)));
    rooms.set(channel, room);
    $("room-list").append(view);
    return room;
  }

  function closeRoom(channel) {
    const room = rooms.get(channel);
    if (!room) return;
    rooms.delete(channel);
    clearInterval(room.poll);
    room.view.remove();
  }

  // The members from the API; the join and leave events that arrive meanwhile are
  // applied again over its answer (they may be newer).
  async function loadMembers(room) {
    const pending = [];
    room.pending = pending;
    try {
      const path = `/api/v1/channels/${encodeURIComponent(room.channel)}/presence`;
      const { presence } = await api("GET", path);
      if (room.pending !== pending) return; // a newer load is under way
      room.members = new Map(presence.members.map((user) => [user._id, user]));
      pending.forEach(([user, here]) => setMember(room, user, here));
      showMembers(room);
    } finally {
      if (room.pending === pending) room.pending = null;
    }
  }

  // From the join and leave events (true), or by reloading the list (false).
  function followMembers(room, joinLeave) {
    room.joinLeave = joinLeave;
    clearInterval(room.poll);
    room.poll = joinLeave
      ? null
      : setInterval(() => loadMembers(room).catch(() => {}), MEMBERS_POLL_MS);
  }

  function memberEvent({ channel, user }, here) {
    const room = rooms.get(channel);
    if (!room || !room.joinLeave) return; // sent before the switch: the reloads tell
    if (room.pending) room.pending.push([user, here]);
    setMember(room, user, here);
    showMembers(room);
  }

  function setMember(room, user, here) {
    if (here) room.members.set(user._id, user);
    else room.members.delete(user._id);
  }

  function showMembers(room) {
    const items = [...room.members.values()].map((user) => {
      const item = document.createElement("li");
      item.dataset.id = user._id;
      item.textContent = user.username;
      if (state.me && user._id === state.me._id) item.append(" (you)");
      return item;
    });
    room.view.querySelector(".members").replaceChildren(...items);
  }

  async function sendToRoom(room) {
    const input = room.view.querySelector(".room-send input");
    const body = { text: input.value, channel: room.channel };
    const { message } = await api("POST", "/api/v1/db/message", body);
    input.value = "";
    showMessage(message, "history");
  }

  // A message from the socket; while the list reloads, it waits for the reload.
  function received(message, how) {
    if (state.reloading) state.reloading.push([message, how]);
    else showMessage(message, how);
  }

  // how: "live" (from the socket), "recovered" (replayed after a reconnection) or
  // "history" (from the REST API). A room's message goes to its room (none if the page
  // is not in it), the others to the list of messages.
  function showMessage(message, how) {
    const room = message.channel ? rooms.get(message.channel) : null;
    if (message.channel && !room) return;
    const list = room ? room.view.querySelector(".room-messages") : $("messages");
    if (list.querySelector(`li[data-id="${message._id}"]`)) return;
    const item = document.createElement("li");
    item.dataset.id = message._id;
    item.dataset.live = how === "live" ? "true" : "false";
    item.dataset.recovered = how === "recovered" ? "true" : "false";
    const meta = document.createElement("div");
    meta.className = "meta";
    const when = new Date(message.created_at).toLocaleTimeString();
    const scope = message.to ? "direct" : message.channel || "everyone";
    meta.textContent = `${message.author.username} → ${scope} · ${when}`;
    if (message.to) meta.classList.add("direct");
    if (how === "recovered") {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "recovered";
      meta.append(" ", tag);
    }
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = message.text;
    item.append(meta, text);
    list.prepend(item);
  }

  async function loadHistory() {
    const { messages } = await api("GET", "/api/v1/db/message?limit=20");
    messages.reverse().forEach((message) => showMessage(message, "history"));
  }

  // After an incomplete recovery: the list again from the REST API; what the socket
  // delivers meanwhile is shown after it (once: messages are keyed by id).
  async function reloadMessages() {
    if (state.reloading) return;
    state.reloading = [];
    try {
      const { messages } = await api("GET", "/api/v1/db/message?limit=20");
      $("messages").replaceChildren();
      messages.reverse().forEach((message) => showMessage(message, "history"));
    } finally {
      const waiting = state.reloading;
      state.reloading = null;
      waiting.forEach(([message, how]) => showMessage(message, how));
    }
  }

  async function send(event) {
    event.preventDefault();
    const body = { text: $("text").value };
    const to = $("to").value.trim();
    if (to) body.to = to;
    const { message } = await api("POST", "/api/v1/db/message", body);
    $("text").value = "";
    showMessage(message, "history");
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
  $("resend").addEventListener("click", guarded(resendVerification));
  $("forgot").addEventListener("click", guarded(showForgotForm));
  $("forgot-cancel").addEventListener("click", guarded(hideForgotForm));
  $("forgot-form").addEventListener("submit", guarded(forgotPassword));
  $("reset-form").addEventListener("submit", guarded(resetPassword));
  $("logout").addEventListener("click", guarded(logout));
  $("password-form").addEventListener("submit", guarded(changePassword));
  $("connect").addEventListener("click", guarded(connect));
  $("disconnect").addEventListener("click", guarded(disconnect));
  $("drop").addEventListener("click", guarded(dropConnection));
  $("message-form").addEventListener("submit", guarded(send));
  $("room-form").addEventListener("submit", guarded(joinRoom));

  // A reload keeps the session of this tab, unless the JWT expired or was revoked.
  if (state.jwt) {
    showSession().catch(() => {
      state.jwt = null;
      sessionStorage.removeItem("jwt");
    });
  }
  outbox.start();
  guarded(openLink)();
})();
