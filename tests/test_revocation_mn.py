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
