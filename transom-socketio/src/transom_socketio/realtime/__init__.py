"""Socket.IO: the server, the token handshake and the message client."""
