"""Errors raised by the wire codecs.

Every decoder in :mod:`mobileip.wire` raises only :class:`DecodeError` (or a subclass) on bad
input, whatever the bytes. The error carries the reply code the protocol prescribes for it, so
the caller can answer with that code or drop the datagram, without re-deriving the reason.
"""

from __future__ import annotations


class DecodeError(ValueError):
    """The bytes are not a valid message.

    ``code`` is the RFC 5944 reply code to answer with (134, poorly formed request, by default),
    or ``None`` when the message must be dropped silently. ``reason`` is a short, stable token
    suitable for a counter label.
    """

    def __init__(self, reason: str, detail: str = "", *, code: int | None = 134) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.code = code


class UnknownCriticalExtension(DecodeError):
    """An unrecognised extension of type 0-127: RFC 5944 1.8 says discard the whole message."""

    def __init__(self, ext_type: int) -> None:
        super().__init__("unknown-critical-extension", f"type {ext_type}", code=None)
        self.ext_type = ext_type
