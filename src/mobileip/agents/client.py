"""The mobile node side: build an authenticated Registration Request, check the reply, and a
small blocking client that retransmits with backoff (``mobileip register``, tests, load tools).

The pure part (:class:`MobileNode`, :func:`build_request`, :func:`check_reply`) does no I/O and
reads no clock: identifications and times are passed in.

Replay handling (RFC 5944 5.7): in ``timestamp`` mode a 133 reply carries the home agent's time in
the high 32 bits; the client adopts that clock offset and retries once. In ``nonce`` mode the high
32 bits of every reply are the nonce to use next; the client retries once with it.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from mobileip.core.replay import NTP_EPOCH_OFFSET, ntp_from_unix
from mobileip.core.security import SecurityAssociation, append_auth, verify_auth
from mobileip.wire import registration as wire
from mobileip.wire.codes import ReplyCode, is_accepted, meaning
from mobileip.wire.errors import DecodeError

_ANY = IPv4Address("0.0.0.0")


@dataclass(frozen=True, slots=True)
class MobileNode:
    home_address: IPv4Address
    care_of_address: IPv4Address
    home_agent: IPv4Address
    sa: SecurityAssociation
    replay: str = "timestamp"  # or "nonce"
    # RFC 2794: sent in a Mobile-Node-NAI extension, before the MN-HA authenticator; with home
    # address 0.0.0.0 the home agent assigns one (docs/pools.md)
    nai: bytes | None = None
    # more extensions before the MN-HA authenticator (RFC 3519's UDP Tunnel Request)
    extensions: tuple[wire.Extension, ...] = ()


def build_request(mn: MobileNode, lifetime: int, identification: int, flags: int = 0) -> bytes:
    """An authenticated Registration Request (lifetime 0 deregisters)."""
    req = wire.RegistrationRequest(
        wire.Flags(flags),
        lifetime,
        mn.home_address,
        mn.home_agent,
        mn.care_of_address,
        identification,
        ((wire.NaiExtension(mn.nai),) if mn.nai is not None else ()) + mn.extensions,
    )
    return append_auth(wire.encode(req), wire.EXT_MN_HA_AUTH, mn.sa)


@dataclass(frozen=True, slots=True)
class ReplyCheck:
    """A reply that passed :func:`check_reply`, or why it did not (``error``)."""

    reply: wire.RegistrationReply | None
    error: str = ""
    authenticated: bool = True

    @property
    def ok(self) -> bool:
        return self.reply is not None and not self.error


def check_reply(mn: MobileNode, data: bytes, identification: int) -> ReplyCheck:
    """Decode a reply to the request with ``identification`` and verify it (RFC 5944 3.6.2).

    The MN-HA authenticator must be valid with our SA; the home address must be ours; the low 32
    bits of the identification must match the request's, and all 64 in an accepted timestamp reply.
    A denial without any MN-HA extension passes with ``authenticated=False``.
    """
    try:
        reply = wire.decode_reply(data)
    except DecodeError as exc:
        return ReplyCheck(None, f"undecodable reply: {exc}")
    dynamic = mn.home_address == _ANY and mn.nai is not None  # any address may be assigned
    if reply.home_address != mn.home_address and not dynamic:
        return ReplyCheck(None, f"reply is for home address {reply.home_address}")
    if (reply.identification & 0xFFFFFFFF) != (identification & 0xFFFFFFFF):
        return ReplyCheck(None, "reply identification does not match the request")
    found = wire.find_auth(reply, wire.EXT_MN_HA_AUTH)
    if found is None:
        # A home agent cannot authenticate a denial for a request it could not authenticate
        # (131, 134): report it, marked unauthenticated; it changes no state.
        if reply.code >= 128:
            return ReplyCheck(reply, authenticated=False)
        return ReplyCheck(None, "reply has no MN-HA authentication extension")
    if found[1].spi != mn.sa.spi:
        return ReplyCheck(None, f"reply authenticated with SPI {found[1].spi}, not {mn.sa.spi}")
    ok, _ = verify_auth(data, reply, wire.EXT_MN_HA_AUTH, mn.sa)
    if not ok:
        return ReplyCheck(None, "reply authenticator is wrong")
    exact = mn.replay == "timestamp" and is_accepted(reply.code)
    if exact and reply.identification != identification:
        return ReplyCheck(None, "reply identification does not match the request")
    return ReplyCheck(reply)


# --- identifications -------------------------------------------------------------------------


@dataclass
class IdentificationSource:
    """Fresh identifications for one mobile node, strictly increasing in timestamp mode.

    ``clock_offset`` (seconds) is added to the local clock after a 133 told us the home agent's
    time; ``nonce`` is the home agent's nonce for the next request in nonce mode.
    """

    replay: str = "timestamp"
    clock_offset: float = 0.0
    nonce: int | None = None
    last: int = 0
    _low: int = field(default_factory=lambda: secrets.randbits(32))

    def next(self, wall: float) -> int:
        if self.replay == "timestamp":
            ident = max(ntp_from_unix(wall + self.clock_offset), self.last + 1)
        else:
            high = self.nonce if self.nonce is not None else secrets.randbits(32)
            self._low = (self._low + 1) & 0xFFFFFFFF
            ident = (high << 32) | self._low
        self.last = ident
        return ident

    def learn(self, reply: wire.RegistrationReply, wall: float) -> None:
        """Take what a verified reply tells us about the home agent's clock or nonce."""
        if self.replay == "nonce":
            self.nonce = reply.identification >> 32
        elif reply.code == ReplyCode.IDENTIFICATION_MISMATCH:
            ha_seconds = (reply.identification >> 32) - NTP_EPOCH_OFFSET
            # The HA's clock is known to the second: take the end of that second, so that the
            # next identification exceeds any the HA accepted before it sent this reply.
            self.clock_offset = ha_seconds + 1.0 - wall
            self.last = 0


# --- the blocking client ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    code: int | None  # None: no valid reply
    meaning: str
    lifetime: int = 0
    identification: int = 0
    home_agent: str = ""
    attempts: int = 0
    retried_133: bool = False
    invalid_replies: tuple[str, ...] = ()
    authenticated: bool = True
    home_address: str = ""  # the reply's (a dynamic mobile node learns its address from it)
    extensions: tuple[wire.Extension, ...] = ()  # the reply's (RFC 3519: the UDP Tunnel Reply)

    @property
    def accepted(self) -> bool:
        return self.code is not None and is_accepted(self.code)

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "meaning": self.meaning,
            "accepted": self.accepted,
            "lifetime": self.lifetime,
            "identification": self.identification,
            "home_agent": self.home_agent,
            "attempts": self.attempts,
            "retried_133": self.retried_133,
            "invalid_replies": list(self.invalid_replies),
            "authenticated": self.authenticated,
            "home_address": self.home_address,
        }


class RegistrationClient:
    """Send requests to one home agent over UDP and wait for verified replies."""

    def __init__(
        self,
        mn: MobileNode,
        ha: tuple[str, int],
        *,
        timeout: float = 1.0,
        retries: int = 3,
        bind: tuple[str, int] = ("0.0.0.0", 0),
    ) -> None:
        self.mn = mn
        self.ha = ha
        self.timeout = timeout
        self.retries = retries
        self.ids = IdentificationSource(mn.replay)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(bind)
        # RFC 3519: tunnel data (type 4) from the home agent arriving during an exchange
        self.on_tunnel_data: Callable[[bytes], None] | None = None
        # ... and where it comes from when not from ``ha`` (a co-located node registering
        # through a foreign agent, RFC 3519 4.11: the home agent itself)
        self.tunnel_from: tuple[str, int] | None = None
        # where replies come from when not from ``ha`` (a request broadcast on the link to a
        # foreign agent by a mobile node without an address, RFC 2794: the agent's address)
        self.reply_from: tuple[str, int] | None = None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RegistrationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register(self, lifetime: int, flags: int = 0) -> RegistrationResult:
        """Register (``lifetime`` > 0) or deregister (0); retry once after a 133."""
        result = self._exchange(lifetime, flags)
        if result.code == ReplyCode.IDENTIFICATION_MISMATCH and result.authenticated:
            again = self._exchange(lifetime, flags)
            return _with(again, result.attempts + again.attempts, retried=True)
        return result

    def deregister(self, all_bindings: bool = False) -> RegistrationResult:
        if all_bindings:
            mn = self.mn
            self.mn = MobileNode(
                mn.home_address, mn.home_address, mn.home_agent, mn.sa, mn.replay, mn.nai
            )
            try:
                return self.register(0)
            finally:
                self.mn = mn
        return self.register(0)

    def _exchange(self, lifetime: int, flags: int) -> RegistrationResult:
        """Send, retransmitting with a doubling timeout; a new identification each time."""
        sent: list[int] = []
        invalid: list[str] = []
        wait = self.timeout
        for attempt in range(1, self.retries + 2):
            ident = self.ids.next(time.time())
            sent.append(ident)
            self.sock.sendto(build_request(self.mn, lifetime, ident, flags), self.ha)
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                try:
                    data, src = self.sock.recvfrom(65535)
                except TimeoutError:
                    break
                except ConnectionRefusedError:
                    invalid.append("ICMP port unreachable from the home agent")
                    continue
                peer = self.reply_from or self.ha
                if (
                    data[:1] == b"\x04"
                    and self.on_tunnel_data is not None
                    and (src[0], src[1]) == (self.tunnel_from or peer)
                ):
                    self.on_tunnel_data(data)  # a packet through the UDP tunnel, not a reply
                    continue
                if (src[0], src[1]) != peer:
                    # the reply must come from the address and port the request went to
                    invalid.append(f"reply from {src[0]}:{src[1]}, not {peer[0]}:{peer[1]}")
                    continue
                check = _match(self.mn, data, sent)
                if not check.ok:
                    invalid.append(check.error)
                    continue
                reply = check.reply
                assert reply is not None
                if check.authenticated:
                    self.ids.learn(reply, time.time())
                return RegistrationResult(
                    reply.code,
                    meaning(reply.code),
                    reply.lifetime,
                    reply.identification,
                    str(reply.home_agent),
                    attempt,
                    invalid_replies=tuple(invalid),
                    authenticated=check.authenticated,
                    home_address=str(reply.home_address),
                    extensions=reply.extensions,
                )
            wait *= 2
        return RegistrationResult(
            None, "no valid reply", attempts=self.retries + 1, invalid_replies=tuple(invalid)
        )


def _match(mn: MobileNode, data: bytes, sent: list[int]) -> ReplyCheck:
    """Check ``data`` against each identification we sent, newest first."""
    first = ReplyCheck(None, "no request matches")
    for ident in reversed(sent):
        check = check_reply(mn, data, ident)
        if check.ok:
            return check
        if ident == sent[-1]:
            first = check
    return first


def _with(result: RegistrationResult, attempts: int, retried: bool) -> RegistrationResult:
    return RegistrationResult(
        result.code,
        result.meaning,
        result.lifetime,
        result.identification,
        result.home_agent,
        attempts,
        retried,
        result.invalid_replies,
        result.authenticated,
        result.home_address,
        result.extensions,
    )


# --- the control API, from the outside --------------------------------------------------------


class ControlError(Exception):
    """The control API could not be reached or refused the request."""


def control_request(
    control: tuple[str, int],
    path: str,
    token: str | None = None,
    *,
    method: str = "GET",
    body: object | None = None,
    timeout: float = 5.0,
) -> object:
    """Call the control API at ``control``; the decoded JSON answer, or :class:`ControlError`
    (with the API's own ``error`` text when it sent one)."""
    import json
    import urllib.error
    import urllib.request

    url = f"http://{control[0]}:{control[1]}{path}"
    data = None if method == "GET" else json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace").strip()
        try:
            answer = json.loads(text)
            if isinstance(answer, dict) and "error" in answer:
                text = str(answer["error"])
        except ValueError:
            pass
        raise ControlError(f"{url}: HTTP {exc.code}: {text}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ControlError(f"{url}: cannot connect: {reason}") from None
    except ValueError as exc:
        raise ControlError(f"{url}: not JSON: {exc}") from None


def fetch_json(
    control: tuple[str, int], path: str, token: str | None = None, timeout: float = 5.0
) -> object:
    """GET ``path`` from the control API at ``control`` and decode its JSON body."""
    return control_request(control, path, token, timeout=timeout)


def post_json(
    control: tuple[str, int],
    path: str,
    body: object | None = None,
    token: str | None = None,
    timeout: float = 5.0,
) -> Any:
    """POST ``body`` (JSON, or nothing) to the control API; the decoded JSON answer."""
    return control_request(control, path, token, method="POST", body=body, timeout=timeout)
