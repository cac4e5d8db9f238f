"""Registration Reply codes (RFC 5944 3.4, RFC 3024) and their meanings."""

from __future__ import annotations

import enum


class ReplyCode(enum.IntEnum):
    ACCEPTED = 0
    ACCEPTED_NO_SIMULTANEOUS = 1
    # denied by the home agent
    UNSPECIFIED = 128
    ADMIN_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    MN_FAILED_AUTH = 131
    FA_FAILED_AUTH = 132
    IDENTIFICATION_MISMATCH = 133
    POORLY_FORMED = 134
    TOO_MANY_BINDINGS = 135
    UNKNOWN_HOME_AGENT = 136
    REVERSE_TUNNEL_UNAVAILABLE = 137
    REVERSE_TUNNEL_MANDATORY = 138
    ENCAPSULATION_UNAVAILABLE = 139
    UDP_ENCAPSULATION_UNAVAILABLE = 142  # RFC 3519
    REDIRECTED_HA = 143  # RFC 4433: register with the HA in the Redirected HA extension


MEANINGS: dict[int, str] = {
    0: "registration accepted",
    1: "registration accepted, but simultaneous mobility bindings unsupported",
    64: "denied by FA: reason unspecified",
    65: "denied by FA: administratively prohibited",
    66: "denied by FA: insufficient resources",
    67: "denied by FA: mobile node failed authentication",
    68: "denied by FA: home agent failed authentication",
    69: "denied by FA: requested lifetime too long",
    70: "denied by FA: poorly formed request",
    71: "denied by FA: poorly formed reply",
    72: "denied by FA: requested encapsulation unavailable",
    77: "denied by FA: invalid care-of address",
    78: "denied by FA: registration timeout",
    80: "denied by FA: home network unreachable",
    81: "denied by FA: home agent host unreachable",
    82: "denied by FA: home agent port unreachable",
    88: "denied by FA: home agent unreachable",
    128: "denied by HA: reason unspecified",
    129: "denied by HA: administratively prohibited",
    130: "denied by HA: insufficient resources",
    131: "denied by HA: mobile node failed authentication",
    132: "denied by HA: foreign agent failed authentication",
    133: "denied by HA: registration identification mismatch",
    134: "denied by HA: poorly formed request",
    135: "denied by HA: too many simultaneous mobility bindings",
    136: "denied by HA: unknown home agent address",
    137: "denied by HA: requested reverse tunnel unavailable",
    138: "denied by HA: reverse tunnel is mandatory and 'T' bit not set",
    139: "denied by HA: requested encapsulation unavailable",
    142: "denied by HA: UDP encapsulation unavailable (RFC 3519)",
    143: "denied by HA: register with the redirected HA (RFC 4433)",
}


def meaning(code: int) -> str:
    return MEANINGS.get(code, f"unknown code {code}")


def is_accepted(code: int) -> bool:
    return code in (0, 1)
