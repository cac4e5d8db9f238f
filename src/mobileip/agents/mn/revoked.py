"""RFC 3543 at the mobile node: is this datagram our foreign agent telling us the binding was
revoked? Pure: bytes and what we know of our registration in, the decoded notice or None out.

Our foreign agent, asked by the home agent's revocation (I bit), sends the mobile node an
unsolicited Registration Reply: code 65 (administratively prohibited), lifetime 0, the
identification of the last request it relayed for us (docs/revocation.md, "At the foreign
agent"). It carries no MN-HA authenticator (the FA has no key for it), so we take it only from
the agent we registered through, on the socket we registered from, for the identification of
our last accepted request (its low 32 bits, which a nonce-mode reply also keeps); anything else
is ignored.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from mobileip.wire import registration as reg
from mobileip.wire.errors import DecodeError

CODE_REVOKED = 65  # FA: administratively prohibited
LOW32 = 0xFFFFFFFF


def revocation_notice(
    data: bytes, src: tuple[str, int], agent: IPv4Address, identification: int
) -> reg.RegistrationReply | None:
    """The notice when ``data`` from ``src`` is our agent's revocation notice, else None."""
    if identification == 0 or src[0] != str(agent):
        return None
    try:
        reply = reg.decode_reply(data)
    except DecodeError:
        return None
    if reply.code != CODE_REVOKED or reply.lifetime != 0:
        return None
    if reply.identification & LOW32 != identification & LOW32:
        return None
    return reply
