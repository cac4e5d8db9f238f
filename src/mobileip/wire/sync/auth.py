"""HA-HA sync: the HA-HA authentication extension and the group keys (docs/sync-protocol.md,
"HA-HA authentication extension": keys and rollover, finding the extension).

Every message ends with the extension (type 40, length, SPI, HMAC over everything before the
authenticator). :class:`GroupAuth` holds the group's keys: it signs with ``send_spi`` and accepts
any of its keys, so a key can be rolled over without a flag day.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from mobileip.wire.mac import Hmac
from mobileip.wire.sync.header import HEADER_LEN, SyncDecodeError

EXT_HA_HA_AUTH = 40

_AUTH_HEAD = struct.Struct("!BBI")  # type length spi
AUTH_HEADER_LEN = _AUTH_HEAD.size  # 6

ALGORITHMS = ("hmac-sha256", "hmac-md5")
_DIGEST_NAME = {"hmac-sha256": "sha256", "hmac-md5": "md5"}
AUTHENTICATOR_LEN = {"hmac-sha256": 32, "hmac-md5": 16}
# authenticator lengths looked for at the end of a datagram, longest first (every algorithm's,
# so a trailer made with a key we do not hold is reported as "bad-spi", not "missing-auth")
_TRAILER_LENGTHS = tuple(sorted(set(AUTHENTICATOR_LEN.values()), reverse=True))


@dataclass(frozen=True, slots=True)
class GroupKey:
    """A group key, selected by SPI. SPIs 0-255 are reserved (RFC 5944 3.5)."""

    spi: int
    algorithm: str
    key: bytes
    # the key schedule, done once (hmac.digest fetches the hash by name at every call: 3 us)
    _mac: Hmac = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 256 <= self.spi <= 0xFFFFFFFF:
            raise ValueError(f"SPI {self.spi} out of range 256..4294967295 (0-255 are reserved)")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; expected one of {ALGORITHMS}")
        if not self.key:
            raise ValueError(f"empty key for SPI {self.spi}")
        object.__setattr__(self, "_mac", Hmac(self.key, _DIGEST_NAME[self.algorithm]))

    @property
    def authenticator_len(self) -> int:
        return AUTHENTICATOR_LEN[self.algorithm]

    def authenticator(self, protected: bytes) -> bytes:
        return self._mac.digest(protected)

    def __repr__(self) -> str:  # never print the key
        return (
            f"GroupKey(spi={self.spi}, algorithm={self.algorithm!r}, key=<{len(self.key)} bytes>)"
        )


class GroupAuth:
    """The group's keys: every key is accepted on receipt (key rollover), ``send_spi`` signs."""

    def __init__(self, keys: Sequence[GroupKey], send_spi: int) -> None:
        self._by_spi: dict[int, GroupKey] = {}
        for k in keys:
            if k.spi in self._by_spi:
                raise ValueError(f"duplicate SPI {k.spi}")
            self._by_spi[k.spi] = k
        if send_spi not in self._by_spi:
            raise ValueError(f"send SPI {send_spi} is not among the keys")
        self.send_key = self._by_spi[send_spi]

    @property
    def send_spi(self) -> int:
        return self.send_key.spi

    @property
    def spis(self) -> tuple[int, ...]:
        return tuple(self._by_spi)

    def get(self, spi: int) -> GroupKey | None:
        return self._by_spi.get(spi)

    def sign(self, body: bytes) -> bytes:
        """Return ``body`` followed by the HA-HA authentication extension."""
        k = self.send_key
        head = _AUTH_HEAD.pack(EXT_HA_HA_AUTH, 4 + k.authenticator_len, k.spi)
        return body + head + k.authenticator(body + head)

    def verify(self, data: bytes) -> int:
        """Check the trailing authentication extension; return where it starts (= body end)."""
        shaped = False
        for alen in _TRAILER_LENGTHS:
            start = len(data) - AUTH_HEADER_LEN - alen
            if start < HEADER_LEN:
                continue
            etype, elen, spi = _AUTH_HEAD.unpack_from(data, start)
            if etype != EXT_HA_HA_AUTH or elen != 4 + alen:
                continue
            shaped = True
            key = self._by_spi.get(spi)
            if key is None or key.authenticator_len != alen:
                continue
            protected = data[: start + AUTH_HEADER_LEN]
            if not hmac.compare_digest(key.authenticator(protected), data[-alen:]):
                raise SyncDecodeError("bad-authenticator", f"SPI {spi}")
            return start
        if shaped:
            raise SyncDecodeError("bad-spi", "no key with the extension's SPI and length")
        raise SyncDecodeError("missing-auth", "no HA-HA authentication extension at the end")


def auth_trailer_len(auth: GroupAuth) -> int:
    """Bytes the authentication extension adds to every message this member sends."""
    return AUTH_HEADER_LEN + auth.send_key.authenticator_len
