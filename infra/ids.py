"""Random ids: uuid4 text for instances and tokens (the production IdSource), hex for requests."""

from __future__ import annotations

import os


def random_uuid4() -> str:
    """The canonical text of a random (version 4) UUID.

    Built from the 16 random bytes directly: `str(uuid.uuid4())` costs twice as much through
    its UUID object, and a start asks for at least two of these."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_id() -> str:
    """32 random hex digits naming one request in logs and answers."""
    return os.urandom(16).hex()


class UuidIds:
    def new_id(self) -> str:
        return random_uuid4()
