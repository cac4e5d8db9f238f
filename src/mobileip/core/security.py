"""Mobility security associations and the MN-HA authenticator (RFC 5944 3.5, RFC 2002).

An SA is chosen by SPI. It names an algorithm and a key and covers a set of home-address prefixes;
an SA whose prefixes do not cover the request's home address does not authenticate it.

Algorithms:

* ``hmac-md5``: HMAC-MD5 (RFC 2104) over the protected bytes (RFC 5944's default);
* ``prefix-suffix-md5``: keyed MD5, ``MD5(key || protected bytes || key)`` (RFC 2002).

The protected bytes are the message from its first byte through the type, length and SPI of the
authentication extension itself (RFC 5944 3.5.1).

An SA may also name a mobile node by its NAI (RFC 2794), exactly (``alice@example.net``) or by a
pattern (``*@example.net``, shell-style): it then authenticates requests whose NAI extension
matches, and may hand out addresses from its ``pool`` (core/pools.py). Several NAI SAs may share
an SPI; :meth:`SecurityAssociations.select` chooses by SPI and NAI, an exact NAI before patterns.
"""

from __future__ import annotations

import fnmatch
import functools
import hmac
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from mobileip.wire.mac import Hmac, keyed_md5
from mobileip.wire.registration import AuthExtension, Message, find_auth

ALGORITHMS = ("hmac-md5", "prefix-suffix-md5")
AUTHENTICATOR_LEN = 16


def compute_authenticator(algorithm: str, key: bytes, protected: bytes) -> bytes:
    if algorithm == "hmac-md5":
        return hmac.digest(key, protected, "md5")
    if algorithm == "prefix-suffix-md5":
        return keyed_md5(key, protected)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def authenticator_function(algorithm: str, key: bytes) -> Callable[[bytes], bytes]:
    """``compute_authenticator`` with algorithm and key bound (HMAC's key schedule done once)."""
    if algorithm == "hmac-md5":
        return Hmac(key, "md5").digest
    if algorithm == "prefix-suffix-md5":
        return functools.partial(keyed_md5, key)
    raise ValueError(f"unknown algorithm {algorithm!r}")


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    spi: int
    algorithm: str
    key: bytes
    prefixes: tuple[IPv4Network, ...]
    # RFC 2794: the NAI (or shell-style pattern) of the mobile nodes this SA authenticates, and
    # the pool their dynamic home addresses come from (both None: an SA chosen by SPI alone)
    nai: bytes | None = None
    pool: str | None = None
    # (netmask, network) as ints, one per prefix: the hot path's form of ``prefixes``
    masks: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    # the algorithm with this key bound (see authenticator_function)
    _sign: Callable[[bytes], bytes] = field(init=False, repr=False, compare=False)
    # the NAI (lower case) as a compiled pattern, matched against lower-cased NAIs
    _nai_rx: re.Pattern[bytes] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        masks = tuple((int(n.netmask), int(n.network_address)) for n in self.prefixes)
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "_sign", authenticator_function(self.algorithm, self.key))
        rx = None
        if self.nai is not None:
            pattern = fnmatch.translate(self.nai.lower().decode("latin-1"))
            rx = re.compile(pattern.encode("latin-1"), re.DOTALL)
        object.__setattr__(self, "_nai_rx", rx)

    def covers(self, home: IPv4Address) -> bool:
        return self.covers_int(int(home))

    def covers_int(self, home: int) -> bool:
        for mask, network in self.masks:  # noqa: SIM110 (any() of a generator: slower, hot path)
            if home & mask == network:
                return True
        return False

    def authenticator(self, protected: bytes) -> bytes:
        return self._sign(protected)

    @property
    def nai_is_pattern(self) -> bool:
        return self.nai is not None and any(c in self.nai for c in b"*?[")

    def matches_nai(self, nai: bytes | None) -> bool:
        """True when this SA names mobile nodes by NAI and ``nai`` is one of them (NAIs compare
        case-insensitively, RFC 4282)."""
        if self._nai_rx is None or nai is None:
            return False
        return self._nai_rx.match(nai.lower()) is not None


class SecurityAssociations:
    """The SAs of one Home Agent (or mobile node), looked up by SPI."""

    def __init__(self, sas: Iterable[SecurityAssociation] = ()) -> None:
        self._by_spi: dict[int, SecurityAssociation] = {}
        # SAs that name their mobile nodes by NAI, by SPI: exact NAIs first, then patterns
        self._by_nai: dict[int, list[SecurityAssociation]] = {}
        for sa in sas:
            if sa.nai is not None:
                same = self._by_nai.setdefault(sa.spi, [])
                if sa.spi in self._by_spi or any(o.nai == sa.nai for o in same):
                    raise ValueError(f"duplicate SPI {sa.spi}")
                same.append(sa)
                same.sort(key=lambda o: o.nai_is_pattern)
                continue
            if sa.spi in self._by_spi or sa.spi in self._by_nai:
                raise ValueError(f"duplicate SPI {sa.spi}")
            self._by_spi[sa.spi] = sa

    def get(self, spi: int) -> SecurityAssociation | None:
        """The SA chosen by SPI alone (never one that names its mobile nodes by NAI)."""
        return self._by_spi.get(spi)

    def select(self, spi: int, nai: bytes | None) -> SecurityAssociation | None:
        """The SA for a request with this SPI and NAI extension (None: no NAI extension)."""
        if nai is not None:
            for sa in self._by_nai.get(spi, ()):
                if sa.matches_nai(nai):
                    return sa
        return self._by_spi.get(spi)

    @property
    def has_nai(self) -> bool:
        """True when some SA names its mobile nodes by NAI."""
        return bool(self._by_nai)

    def for_home(self, home: IPv4Address) -> SecurityAssociation | None:
        for sa in self._by_spi.values():
            if sa.covers(home):
                return sa
        return None

    def __len__(self) -> int:
        return len(self._by_spi) + sum(len(v) for v in self._by_nai.values())


def append_auth(body: bytes, ext_type: int, sa: SecurityAssociation) -> bytes:
    """Return ``body`` followed by an authentication extension computed with ``sa``."""
    head = struct.pack("!BBI", ext_type, 4 + AUTHENTICATOR_LEN, sa.spi)
    return body + head + sa.authenticator(body + head)


def verify_auth(
    raw: bytes, msg: Message, ext_type: int, sa: SecurityAssociation
) -> tuple[bool, AuthExtension | None]:
    """Check the first extension of ``ext_type`` in ``msg`` (decoded from ``raw``) with ``sa``."""
    found = find_auth(msg, ext_type)
    if found is None:
        return False, None
    index, ext = found
    start = msg.ext_offsets[index]
    protected = raw[: start + 6]
    return hmac.compare_digest(sa.authenticator(protected), ext.authenticator), ext
