"""RFC 3543 at our mobile node (agents/mn/revoked.py): the foreign agent's revocation notice is
recognised only from our agent, for our last accepted identification; any bytes are safe."""

from __future__ import annotations

from ipaddress import IPv4Address

import vectors as v
from hypothesis import given
from hypothesis import strategies as st

from mobileip.agents.fa import rules as fa
from mobileip.agents.mn.revoked import revocation_notice
from mobileip.wire import registration as reg

AGENT = IPv4Address("10.2.0.1")
SRC = (str(AGENT), 434)
IDENT = 0xE8FE6F8000000007


def notice(
    code: int = fa.FA_ADMINISTRATIVELY_PROHIBITED, lifetime: int = 0, ident: int = IDENT
) -> bytes:
    return reg.encode(reg.RegistrationReply(code, lifetime, v.HOME, v.HA, ident))


def test_the_notice_our_foreign_agent_sends_is_recognised() -> None:
    got = revocation_notice(notice(), SRC, AGENT, IDENT)
    assert got is not None and got.home_address == v.HOME and got.code == 65
    # a nonce-mode reply keeps the low 32 bits only
    assert revocation_notice(notice(ident=0x1234567800000007), SRC, AGENT, IDENT) is not None


def test_anything_else_is_ignored() -> None:
    assert revocation_notice(notice(), ("10.2.0.9", 434), AGENT, IDENT) is None  # another host
    assert revocation_notice(notice(ident=IDENT + 1), SRC, AGENT, IDENT) is None
    assert revocation_notice(notice(), SRC, AGENT, 0) is None  # never registered
    assert revocation_notice(notice(code=0, lifetime=600), SRC, AGENT, IDENT) is None
    assert revocation_notice(notice(lifetime=5), SRC, AGENT, IDENT) is None
    assert revocation_notice(notice(code=66), SRC, AGENT, IDENT) is None


@given(st.binary(max_size=120))
def test_any_bytes_are_a_notice_or_none(data: bytes) -> None:
    got = revocation_notice(data, SRC, AGENT, IDENT)
    assert got is None or (got.code, got.lifetime) == (65, 0)


def test_reading_the_notice_never_blocks_on_the_exchange_timeout() -> None:
    """The mobile node's ~0.5 s re-registration delay after a revocation (the failover test):
    after the notice, ``_on_notice`` read the socket again, and the exchange had left a timeout
    on it, which CPython waits out even with MSG_DONTWAIT: the event loop stood still for it.
    With a 3 s timeout left on the socket, the handler now returns at once, the binding dropped
    and the loop woken to register again."""
    import asyncio
    import socket
    import time
    from types import SimpleNamespace

    from mobileip.agents.mn.daemon import MobileNodeDaemon

    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mn,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as agent,
    ):
        mn.bind(("127.0.0.1", 0))
        agent.bind(("127.0.0.1", 0))
        mn.settimeout(3.0)  # what the last exchange left
        agent.sendto(notice(), mn.getsockname())
        time.sleep(0.05)
        logged: list[str] = []
        stub = SimpleNamespace(
            client=SimpleNamespace(sock=mn),
            agent=SimpleNamespace(address=IPv4Address("127.0.0.1")),
            registered_coa=IPv4Address("127.0.0.1"),
            accepted_id=IDENT,
            renew_at=1e9,
            log=SimpleNamespace(info=lambda event, **kw: logged.append(event)),
            _wake=asyncio.Event(),
        )
        began = time.monotonic()
        MobileNodeDaemon._on_notice(stub)  # type: ignore[arg-type]
        took = time.monotonic() - began
    assert logged == ["mn.revoked"] and stub.registered_coa is None and stub._wake.is_set()
    assert took < 2.0, f"the handler blocked {took:.2f} s on the socket timeout"
