"""Positions as clients see them: the history's own ids, enciphered.

The history numbers each entry with two numbers (its Redis stream id).
Handed out as they are, two positions a user received would tell how many messages
(theirs or anyone's) the deployment emitted between them. A position is therefore that
pair of numbers in one AES block, enciphered under a key derived from JWT_SECRET,
written in 22 URL-safe characters. A block cipher is a pseudorandom permutation:
without the key, two positions are unrelated 128-bit strings, neither ordered nor
close, whatever lies between them. Every process that shares JWT_SECRET reads every
other's positions (the same id gives the same position everywhere, as a recovering
client needs).

The block holds a fixed 4-byte tag before the two numbers (encode-then-encipher): a
string that deciphers without it is not a position of this deployment (forged,
altered, or from another secret) and reads as unknown, never as some other entry.
Positions enciphered under JWT_PREVIOUS_SECRET are still read during a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# Derives the positions' key from JWT_SECRET; JWTs use the secret itself (HMAC-SHA256
# over the token), so the two uses never share a key.
KEY_LABEL = b"transom recovery positions v1"
TAG = b"pos1"
NUMBER_BYTES = 6  # each number below 2**48: a millisecond clock until the year 10889
LIMIT = 2 ** (8 * NUMBER_BYTES)
# 16 bytes in URL-safe base64 without padding: 21 characters, then one that carries the
# block's last 2 bits (its 4 low bits are zero).
_SHAPE = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")
LENGTH = 22


def _block_cipher(secret: str) -> Cipher[modes.ECB]:
    key = hmac.new(secret.encode(), KEY_LABEL, hashlib.sha256).digest()
    # One block at a time: AES itself, the pseudorandom permutation (no chaining to do).
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305


class PositionCodec:
    """Enciphers a history id (two numbers below 2**48) into a position, and back."""

    def __init__(self, secret: str, previous_secret: str | None = None) -> None:
        self._encryptor = _block_cipher(secret).encryptor()
        self._decryptors = [
            _block_cipher(key).decryptor() for key in (secret, previous_secret) if key
        ]

    def encode(self, first: int, second: int) -> str:
        if not (0 <= first < LIMIT and 0 <= second < LIMIT):
            raise ValueError(f"a position holds numbers below 2**48, got {first}, {second}")
        block = TAG + first.to_bytes(NUMBER_BYTES, "big") + second.to_bytes(NUMBER_BYTES, "big")
        return base64.urlsafe_b64encode(self._encryptor.update(block)).decode()[:LENGTH]

    def decode(self, position: object) -> tuple[int, int] | None:
        """The two numbers of a position this deployment wrote; None for anything else."""
        if not isinstance(position, str) or not _SHAPE.fullmatch(position):
            return None
        sealed = base64.urlsafe_b64decode(position + "==")
        for decryptor in self._decryptors:
            block = decryptor.update(sealed)
            if block[: len(TAG)] == TAG:
                middle = len(TAG) + NUMBER_BYTES
                return int.from_bytes(block[len(TAG) : middle]), int.from_bytes(block[middle:])
        return None
