"""The connect job in Python without the frameworks: a yardstick, never a server to deploy.

Issue 23 asks the app's connect rate (a socket token, then the handshake that consumes
it) to reach half of Node's bare handshake. This server answers one question for it:
how much of the app's CPU per connection does the job itself need in Python, and how
much goes to the layers the app is built on (Tornado's HTTP/1 and WebSocket handlers,
engine.io, python-socketio) and to what the app adds per request?

It does what ``node_server.js`` does with ``MONGODB_URI`` (``node_token_batched``), with
the same API, so ``loadgen.mjs --server node-token`` drives it:

- ``POST /bench/login {user}`` gives an HS256 JWT (PyJWT, as the app);
- ``POST /api/v1/user/sockettoken`` checks the Bearer JWT (signature and expiry; of a JWT
  verified before, only the expiry, as the app), makes a 32-byte token, stores its
  SHA-256 with the grant and ``expires_at`` (TTL index), the inserts of requests that
  arrive together in one ``insert_many``, and remembers the grant, as the app does;
- ``GET /socket.io/?EIO=4&transport=websocket`` upgrades (RFC 6455), sends engine.io's
  OPEN, and on Socket.IO's CONNECT with ``{"token"}`` deletes the token's document with
  the expiry in the filter (``delete_many`` with ``$in``, batched), then answers CONNECT;
  a refused token gets ``INVALID_TOKEN``;
- ``GET /bench/stats``: what ``run.py`` reads of every server.

One asyncio protocol per connection on uvloop, PyMongo's async client, nothing else.
With ``LEAN_FRONT=tornado`` the same job is served by Tornado instead (its HTTP/1 server,
a ``RequestHandler`` for the token, a ``WebSocketHandler`` for the socket, the engine.io
and Socket.IO packets still made by hand): the price of Tornado alone, without
engine.io, python-socketio or anything the app adds. With ``LEAN_FRONT=tornado_http``
only Tornado's HTTP/1 server (``HTTP1Connection`` on an ``IOStream``) is kept: its
requests go to an ``HTTPMessageDelegate`` (Tornado's public routing interface), and the
WebSocket is framed by hand on the stream ``detach()`` returns. It tells how much of
Tornado's price is its HTTP/1 connection and how much its handlers.
What it leaves out, as ``node_server.js`` does, and the app must not: the access log,
metrics, request ids, rate limits, the revocation check, origin checks, engine.io's
pings and every packet but CONNECT, the user's rooms, presence and recovery positions,
and most of HTTP (no chunked bodies, one request at a time per connection). It trusts
its load generator: it is a measure of the floor, not a server.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import re
import resource
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import jwt
import uvloop
from pymongo import AsyncMongoClient

JWT_SECRET = secrets.token_bytes(32)
TOKEN_TTL_S = 30
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_BYTES = 16_384
ENGINE_OPEN = {"upgrades": [], "pingInterval": 25_000, "pingTimeout": 60_000, "maxPayload": 10**6}
REFUSED = '44{"message":"INVALID_TOKEN"}'

# hash -> grant of the tokens issued here (the app remembers its own the same way)
issued: dict[str, dict[str, Any]] = {}
connected: set[Connection] = set()
# JWT -> its claims, for the JWTs verified here (at most VERIFIED_KEPT, the oldest go)
verified: dict[str, dict[str, Any]] = {}
VERIFIED_KEPT = 10_000
# Tasks running, kept referenced until done (the loop keeps only weak references).
running: set[asyncio.Task[None]] = set()


def spawn(work: Awaitable[None]) -> None:
    task = asyncio.ensure_future(work)
    running.add(task)
    task.add_done_callback(running.discard)


class Batcher:
    """Calls made while a batch is out (or in one loop pass) go in the next batch."""

    def __init__(self, run: Callable[[list[Any]], Awaitable[list[Any]]]) -> None:
        self._run = run
        self._waiting: list[tuple[Any, asyncio.Future[Any]]] = []
        self._out = False

    def submit(self, item: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._waiting and not self._out:
            loop.call_soon(self._start)
        self._waiting.append((item, future))
        return future

    def _start(self) -> None:
        spawn(self._flush())

    async def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        self._out = True
        try:
            results = await self._run([item for item, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)
        except Exception as error:
            for _, future in batch:
                future.set_exception(error)
        self._out = False
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._start)


class Store:
    def __init__(self, uri: str) -> None:
        self.tokens = AsyncMongoClient(uri).bench.socket_tokens
        self.inserts = Batcher(self._insert)
        self.deletes = Batcher(self._delete)

    async def _insert(self, documents: list[dict[str, Any]]) -> list[bool]:
        await self.tokens.insert_many(documents, ordered=False)
        return [True] * len(documents)

    async def _delete(self, keys: list[str]) -> list[bool]:
        unexpired = {"$gt": dt.datetime.now(dt.UTC)}
        deleted = await self.tokens.delete_many({"_id": {"$in": keys}, "expires_at": unexpired})
        # As node_server.js: all of them when the count says so, else none.
        return [deleted.deleted_count == len(keys)] * len(keys)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def text_frame(text: str) -> bytes:
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65_536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


def unmask(payload: bytes, mask: bytes) -> bytes:
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def json_answer(status: int, body: Any) -> bytes:
    data = json.dumps(body).encode()
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (status, b"OK" if status == 200 else b"Error", len(data))
    ) + data


class Connection(asyncio.Protocol):
    store: Store  # set by main()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.buffer = b""
        self.websocket = False

    def connection_lost(self, exc: Exception | None) -> None:
        connected.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.websocket:
            self._frames()
            return
        while not self.websocket:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self.transport.close()
                return
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            size = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + size:
                return
            body = self.buffer[end + 4 : end + 4 + size]
            self.buffer = self.buffer[end + 4 + size :]
            self._route(method, target.partition("?")[0], headers, body)

    def _route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        if method == "GET" and path == "/socket.io/" and headers.get("upgrade") == "websocket":
            self._upgrade(headers)
        elif method == "POST" and path == "/api/v1/user/sockettoken":
            claims = bearer_claims(headers.get("authorization", ""))
            if claims is None:
                self.transport.write(json_answer(401, {"error": {"code": "invalid_token"}}))
                return
            spawn(self._issue(claims))
        elif method == "POST" and path == "/bench/login":
            self.transport.write(json_answer(200, {"token": login(body)}))
        elif method == "GET" and path == "/bench/stats":
            self.transport.write(json_answer(200, stats()))
        else:
            self.transport.write(json_answer(404, {"error": {"code": "not_found"}}))

    async def _issue(self, claims: dict[str, Any]) -> None:
        self.transport.write(json_answer(200, await issue(claims)))

    def _upgrade(self, headers: dict[str, str]) -> None:
        key = headers.get("sec-websocket-key", "")
        if headers.get("sec-websocket-version") != "13" or not key:
            self.transport.write(json_answer(400, {"error": {"code": "bad_upgrade"}}))
            self.transport.close()
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + WEBSOCKET_GUID).digest())
        self.websocket = True
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
            % accept
            + text_frame(engine_open())
        )
        self._frames()

    def _frames(self) -> None:
        """Each complete client frame in the buffer (always masked, RFC 6455 5.3)."""
        while len(self.buffer) >= 2:
            first, second = self.buffer[0], self.buffer[1]
            size, start = second & 0x7F, 2
            if size == 126:
                size, start = int.from_bytes(self.buffer[2:4], "big"), 4
            elif size == 127:
                size, start = int.from_bytes(self.buffer[2:10], "big"), 10
            if not second & 0x80:
                self.transport.close()
                return
            if len(self.buffer) < start + 4 + size:
                return
            mask = self.buffer[start : start + 4]
            payload = unmask(self.buffer[start + 4 : start + 4 + size], mask)
            self.buffer = self.buffer[start + 4 + size :]
            opcode = first & 0x0F
            if opcode == 0x8:
                self.transport.close()
                return
            if opcode == 0x1 and payload.startswith(b"40"):
                spawn(self._connect(payload[2:]))

    async def _connect(self, packet: bytes) -> None:
        answer = await consume(packet)
        if answer != REFUSED:
            connected.add(self)
        self.transport.write(text_frame(answer))


def bearer_claims(authorization: str) -> dict[str, Any] | None:
    """The claims of a valid ``Bearer`` HS256 JWT (signature and expiry), else None. A JWT
    verified before is not verified again, only its expiry (the app keeps them too)."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme != "Bearer":
        return None
    token = credentials.strip()
    claims = verified.get(token)
    if claims is None:
        try:
            claims = cast(dict[str, Any], jwt.decode(token, JWT_SECRET, ["HS256"]))
        except jwt.InvalidTokenError:
            return None
        if len(verified) >= VERIFIED_KEPT:
            del verified[next(iter(verified))]  # the oldest
        verified[token] = claims
    return claims if claims["exp"] > time.time() else None


def login(body: bytes) -> str:
    user = str(json.loads(body or b"{}").get("user", ""))
    claims = {"sub": user, "jti": uuid.uuid4().hex, "exp": int(time.time()) + 3600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


async def issue(claims: dict[str, Any]) -> dict[str, Any]:
    """A socket token: stored hashed with its grant and expiry, and remembered."""
    token = secrets.token_urlsafe(32)
    key = token_hash(token)
    grant = {"user": {"_id": claims["sub"]}, "jti": claims["jti"], "exp": claims["exp"]}
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=TOKEN_TTL_S)
    await Connection.store.inserts.submit({"_id": key, **grant, "expires_at": expires_at})
    issued[key] = grant
    return {"token": token, "expires_in": TOKEN_TTL_S}


def engine_open() -> str:
    return "0" + json.dumps({"sid": secrets.token_urlsafe(15), **ENGINE_OPEN})


def stats() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/statm") as statm:
        rss_kb = int(statm.read().split()[1]) * (resource.getpagesize() // 1024)
    return {
        "server": "python_lean",
        "pid": os.getpid(),
        "rss_kb": rss_kb,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "sockets": len(connected),
        "time_ms": time.time() * 1000,
    }


async def consume(packet: bytes | str) -> str:
    """Socket.IO's answer to a CONNECT packet's payload: CONNECT, or INVALID_TOKEN."""
    try:
        auth = json.loads(packet or b"{}")
    except ValueError:
        auth = None
    token = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(token, str) or not TOKEN_SHAPE.fullmatch(token):
        return REFUSED
    key = token_hash(token)
    grant = issued.pop(key, None)
    consumed = grant is not None and await Connection.store.deletes.submit(key)
    if not consumed or grant is None or grant["exp"] <= time.time():
        return REFUSED
    return "40" + json.dumps({"sid": secrets.token_urlsafe(15)})


def tornado_app() -> Any:
    """The same job on Tornado (``LEAN_FRONT=tornado``)."""
    import tornado.web
    import tornado.websocket

    class Login(tornado.web.RequestHandler):
        def post(self) -> None:
            self.write({"token": login(self.request.body)})

    class Stats(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write(stats())

    class SocketToken(tornado.web.RequestHandler):
        async def post(self) -> None:
            claims = bearer_claims(self.request.headers.get("Authorization", ""))
            if claims is None:
                self.set_status(401)
                self.write({"error": {"code": "invalid_token"}})
                return
            self.write(await issue(claims))

    class Socket(tornado.websocket.WebSocketHandler):
        def check_origin(self, origin: str) -> bool:
            return True

        def open(self) -> None:
            self.write_message(engine_open())

        async def on_message(self, message: str | bytes) -> None:
            if isinstance(message, str) and message.startswith("40"):
                answer = await consume(message[2:])
                if answer != REFUSED:
                    connected.add(self)
                self.write_message(answer)

        def on_close(self) -> None:
            connected.discard(self)

    return tornado.web.Application(
        [
            (r"/socket.io/", Socket),
            (r"/api/v1/user/sockettoken", SocketToken),
            (r"/bench/login", Login),
            (r"/bench/stats", Stats),
        ]
    )


def tornado_http_delegate() -> Any:
    """The same job on Tornado's HTTP/1 server alone (``LEAN_FRONT=tornado_http``): no
    ``RequestHandler``, no ``WebSocketHandler``; the socket framed by hand after
    ``detach()``."""
    from tornado import httputil, iostream

    class StreamTransport:
        def __init__(self, stream: iostream.IOStream) -> None:
            self.stream = stream

        def write(self, data: bytes) -> None:
            if not self.stream.closed():
                self.stream.write(data)

        def close(self) -> None:
            self.stream.close()

    async def pump(connection: Connection, stream: iostream.IOStream) -> None:
        try:
            while True:
                connection.data_received(await stream.read_bytes(65_536, partial=True))
        except iostream.StreamClosedError:
            connection.connection_lost(None)

    class Request(httputil.HTTPMessageDelegate):
        def __init__(self, connection: Any) -> None:
            self.connection = connection
            self.body = b""

        def headers_received(self, start_line: Any, headers: Any) -> None:
            self.start_line = start_line
            self.headers = headers

        def data_received(self, chunk: bytes) -> None:
            self.body += chunk

        def finish(self) -> None:
            method, path = self.start_line.method, self.start_line.path.partition("?")[0]
            if method == "GET" and path == "/socket.io/":
                stream = self.connection.detach()
                connection = Connection()
                connection.connection_made(cast(Any, StreamTransport(stream)))
                connection._upgrade({k.lower(): v for k, v in self.headers.get_all()})
                spawn(pump(connection, stream))
            elif method == "POST" and path == "/api/v1/user/sockettoken":
                claims = bearer_claims(self.headers.get("Authorization", ""))
                if claims is None:
                    self.answer(401, {"error": {"code": "invalid_token"}})
                    return
                spawn(self._issue(claims))
            elif method == "POST" and path == "/bench/login":
                self.answer(200, {"token": login(self.body)})
            elif method == "GET" and path == "/bench/stats":
                self.answer(200, stats())
            else:
                self.answer(404, {"error": {"code": "not_found"}})

        async def _issue(self, claims: dict[str, Any]) -> None:
            self.answer(200, await issue(claims))

        def answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            headers = httputil.HTTPHeaders(
                {"Content-Type": "application/json", "Content-Length": str(len(data))}
            )
            start = httputil.ResponseStartLine("HTTP/1.1", status, "OK")
            self.connection.write_headers(start, headers, data)
            self.connection.finish()

    class Server(httputil.HTTPServerConnectionDelegate):
        def start_request(self, server_conn: object, request_conn: Any) -> Request:
            return Request(request_conn)

    return Server()


async def main() -> None:
    Connection.store = Store(os.environ["MONGODB_URI"])
    await Connection.store.tokens.create_index([("expires_at", 1)], expireAfterSeconds=0)
    front = os.environ.get("LEAN_FRONT", "asyncio")
    if front in ("tornado", "tornado_http"):
        import tornado.httpserver
        import tornado.netutil

        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        app = tornado_app() if front == "tornado" else tornado_http_delegate()
        tornado.httpserver.HTTPServer(app).add_sockets(sockets)
        port = sockets[0].getsockname()[1]
    else:
        server = await asyncio.get_running_loop().create_server(Connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port} (python, lean on {front})", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
