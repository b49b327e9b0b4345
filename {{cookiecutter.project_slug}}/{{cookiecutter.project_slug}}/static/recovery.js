// recovery.js: a Socket.IO connection that recovers the messages it missed while it
// was disconnected (the server's recovery contract, README "Recovering missed messages").
// A plain script: no bundler, no eval (it runs under the page's CSP script-src 'self').
// Load it after socket.io.min.js; it defines window.TransomRecovery (and module.exports
// under node, for tests and tools).
//
//   const live = TransomRecovery.connect(io, {
//     fetchToken: TransomRecovery.tokenFetcher(() => jwt),  // required: () => Promise<{token, position?}>
//     url: undefined,          // the server (default: the page's origin)
//     socketOptions: {},       // more io() options (transports...); `auth` is this module's
//     position: null,          // resume after this position (e.g. an earlier handle's .position)
//     events: "*",             // events whose trailing {position} is kept: "*" or ["message", ...]
//     channels: () => [],      // the channels to have back on each (re)connection (or an array)
//     onRecovery: ({complete, count, channels}) => {},  // after each (re)connection with a position
//     onTokenError: (error) => {},            // a socket token could not be fetched
//   });
//   live.socket.on("message", (payload, meta) => ...);  // meta.recovered: replayed after a drop
//   live.socket.on("message", (payload) => ...);        // one-argument handlers work unchanged
//   live.position      // the last position received (or the socket token's), or null
//   live.lastRecovery  // {complete, count[, channels]} of the last reconnection, or null
//   live.close()       // disconnect for good
//   TransomRecovery.trailingMeta(args)  // an event's trailing {position} argument, or null
//
// What it does:
// - Every (re)connection fetches a fresh one-time socket token (socket.io-client calls the
//   `auth` function each time) and sends {token, position}: the position of the last event
//   received, or, before any, the one the socket-token answer gave, so nothing emitted
//   between the token and the connection is lost.
// - With `channels`, it also sends auth.channels (when there are any): the server
//   subscribes the socket to them again, each authorised anew, before the replay, which
//   then includes their messages; `recovery` says which came back
//   ({channels: {"room:lobby": true}}, false for one refused).
// - The server answers a handshake with a position by the event `recovery`
//   {complete, count} and then replays the `count` events missed, in order, before the live
//   ones. The replayed events get `meta.recovered = true` on their trailing {position}
//   argument, so a page can mark them. `complete: false` means the server could not replay
//   everything (the position is older than its retention window, or unknown): reload state
//   through the REST API.
// - A token fetch that fails on the network, or that the server answers 408, 429 or 5xx
//   (errors carry the HTTP `status`, as tokenFetcher's do), drops that attempt and lets
//   socket.io-client retry with its back-off. Any other refusal (401: the JWT expired or
//   was revoked) lets the handshake fail with INVALID_TOKEN, and the socket stops.
(function (root, factory) {
  "use strict";
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.TransomRecovery = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  /** Is a failed token fetch worth another try (network, timeout, rate limit, 5xx)? */
  function retryable(error) {
    const status = error && error.status;
    return !status || status === 408 || status === 429 || status >= 500;
  }

  /** The trailing {position} object of an event's arguments, or null. */
  function trailingMeta(args) {
    if (args.length < 2) return null;
    const last = args[args.length - 1];
    if (!last || typeof last !== "object" || Array.isArray(last)) return null;
    return typeof last.position === "string" ? last : null;
  }

  /**
   * A fetchToken for the app's POST /api/v1/user/sockettoken with a Bearer JWT.
   * getJwt() is called on every (re)connection, so a refreshed JWT is used.
   */
  function tokenFetcher(getJwt, url) {
    const endpoint = url || "/api/v1/user/sockettoken";
    return function fetchToken() {
      return fetch(endpoint, {
        method: "POST",
        headers: { Authorization: "Bearer " + getJwt() },
      }).then(function (response) {
        if (!response.ok) {
          const error = new Error("socket token: HTTP " + response.status);
          error.status = response.status;
          throw error;
        }
        return response.json();
      });
    };
  }

  function connect(io, options) {
    const opts = options || {};
    if (typeof opts.fetchToken !== "function") {
      throw new TypeError("TransomRecovery.connect: options.fetchToken is required");
    }
    const watched = Array.isArray(opts.events) ? new Set(opts.events) : null;
    const onRecovery = opts.onRecovery || function () {};
    const onTokenError = opts.onTokenError || function () {};
    const state = {
      position: typeof opts.position === "string" ? opts.position : null,
      lastRecovery: null,
      replaying: 0, // replayed events still to come after the last `recovery`
    };
    let socket = null;

    function auth(callback) {
      Promise.resolve()
        .then(opts.fetchToken)
        .then(
          function (answer) {
            if (state.position === null && answer && typeof answer.position === "string") {
              state.position = answer.position;
            }
            const payload = { token: answer && answer.token };
            if (state.position !== null) payload.position = state.position;
            const channels = typeof opts.channels === "function" ? opts.channels() : opts.channels;
            if (Array.isArray(channels) && channels.length) payload.channels = channels.slice();
            callback(payload);
          },
          function (error) {
            onTokenError(error);
            if (!retryable(error)) callback({});
            else if (socket && socket.io.engine) socket.io.engine.close();
          },
        );
    }

    const socketOptions = Object.assign({}, opts.socketOptions, { auth: auth });
    socket = opts.url ? io(opts.url, socketOptions) : io(socketOptions);

    // Any-listeners run before the event's own handlers: the position is current and
    // meta.recovered set by the time a page's handler sees the event.
    socket.onAny(function (event) {
      const args = Array.prototype.slice.call(arguments, 1);
      if (event === "recovery" && args[0] && typeof args[0] === "object") {
        const result = { complete: args[0].complete === true, count: Number(args[0].count) || 0 };
        const channels = args[0].channels;
        if (channels && typeof channels === "object") result.channels = channels;
        state.lastRecovery = result;
        state.replaying = result.count;
        onRecovery(result);
        return;
      }
      const meta = trailingMeta(args);
      if (!meta) return;
      if (state.replaying > 0) {
        state.replaying -= 1;
        meta.recovered = true;
      }
      if (!watched || watched.has(event)) state.position = meta.position;
    });
    socket.on("disconnect", function () {
      state.replaying = 0;
    });

    return {
      socket: socket,
      get position() {
        return state.position;
      },
      get lastRecovery() {
        return state.lastRecovery;
      },
      close: function () {
        socket.disconnect();
      },
    };
  }

  return { connect: connect, tokenFetcher: tokenFetcher, trailingMeta: trailingMeta };
});
