"""Golden vectors for RFC 5944 registration messages, written by hand from the RFC's byte layout.

Every message is a hex literal with one field per line. Nothing here is produced by the code under
test: the authenticators were computed once with ``hmac``/``hashlib`` over the bytes above them
(the tests recompute them the same way, independently of :mod:`mobileip.core.security`).

Clock used by the vectors: wall time ``WALL`` = 1_700_000_000.5 (Unix) = NTP seconds 0xE8FE6F80
with fraction 0x80000000.
"""

from __future__ import annotations

from ipaddress import IPv4Address


def hexbytes(text: str) -> bytes:
    """Bytes from a hex listing: everything after ``#`` on a line is a comment."""
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in text.splitlines()))


WALL = 1_700_000_000.5
NTP_SECONDS = 0xE8FE6F80  # 1_700_000_000 + 2_208_988_800

HOME = IPv4Address("10.1.0.5")
HOME_PS = IPv4Address("10.1.0.6")
HA = IPv4Address("10.1.0.1")
COA = IPv4Address("192.0.2.7")
COA2 = IPv4Address("198.51.100.9")
NAI = b"mn1@example.net"

# Mobility security associations of the vectors.
HMAC_SPI = 256
HMAC_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
PS_SPI = 257
PS_KEY = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
HOME_PREFIX = "10.1.0.0/24"

# --- requests ---------------------------------------------------------------------------------

# A plain registration with the NAI and an HMAC-MD5 MN-HA authenticator (SPI 256).
REQ_HMAC = hexbytes(
    """
    01                                  # type 1: Registration Request
    00                                  # flags S B D M G r T x: none set
    07 08                               # lifetime 1800 s
    0a 01 00 05                         # home address 10.1.0.5
    0a 01 00 01                         # home agent 10.1.0.1
    c0 00 02 07                         # care-of address 192.0.2.7
    e8 fe 6f 80 80 00 00 00             # identification: NTP 0xE8FE6F80.80000000 (= WALL)
    83 0f                               # ext 131 MN-NAI (RFC 2794), length 15
    6d 6e 31 40 65 78 61 6d 70 6c 65 2e 6e 65 74   # "mn1@example.net"
    20 14                               # ext 32 MN-HA authentication, length 20
    00 00 01 00                         # SPI 256
    0c 34 b1 91 98 d8 3c 43 73 d7 31 52 a0 55 f2 ab   # HMAC-MD5(key, all bytes above)
    """
)
REQ_HMAC_AUTH_OFFSET = 24 + 17  # where the MN-HA extension starts

# Keyed MD5 prefix+suffix (RFC 2002) with SPI 257; T flag set, lifetime 600, no NAI.
REQ_PS = hexbytes(
    """
    01                                  # type 1
    02                                  # flags: T (reverse tunnelling)
    02 58                               # lifetime 600 s
    0a 01 00 06                         # home address 10.1.0.6
    0a 01 00 01                         # home agent 10.1.0.1
    c0 00 02 07                         # care-of address 192.0.2.7
    e8 fe 6f 80 00 00 00 01             # identification
    20 14                               # ext 32 MN-HA, length 20
    00 00 01 01                         # SPI 257
    6f 2f e7 6e a6 26 66 24 f6 95 27 05 ae df bf 8d   # MD5(key + all bytes above + key)
    """
)
REQ_PS_AUTH_OFFSET = 24

# A timestamp 128 s behind WALL: outside any sensible replay window.
REQ_STALE = hexbytes(
    """
    01 00 07 08                         # type 1, no flags, lifetime 1800
    0a 01 00 05  0a 01 00 01  c0 00 02 07   # home, home agent, care-of address
    e8 fe 6f 00 12 34 56 78             # identification: NTP seconds 0xE8FE6F00 (WALL - 128)
    20 14 00 00 01 00                   # MN-HA, length 20, SPI 256
    0c b5 83 a3 8b fd b2 ed 71 87 de 33 f8 13 01 c1   # HMAC-MD5
    """
)

# Every flag but the reserved ones, infinite lifetime, and one of each extension kind.
REQ_FULL = hexbytes(
    """
    01                                  # type 1
    fa                                  # flags S B D M G . T . (0x80|0x40|0x20|0x10|0x08|0x02)
    ff ff                               # lifetime 0xffff: infinity
    0a 01 00 05                         # home address 10.1.0.5
    0a 01 00 01                         # home agent 10.1.0.1
    c6 33 64 09                         # care-of address 198.51.100.9
    e8 fe 6f 80 00 00 00 02             # identification
    00                                  # ext 0: one byte of padding, no length
    83 0f 6d 6e 31 40 65 78 61 6d 70 6c 65 2e 6e 65 74   # ext 131 NAI "mn1@example.net"
    c8 03 61 62 63                      # ext 200 (unknown, skippable 128-255), length 3, "abc"
    26 00 00 08                         # ext 38 CVSE (long format): type, reserved, length 8
    00 00 00 09 00 01 ab cd             #   vendor id 9, vendor CVSE type 1, value abcd
    20 14 00 00 01 00                   # ext 32 MN-HA, length 20, SPI 256
    1b 65 02 5e 03 39 aa aa 9a ef 9d 53 29 97 ff 9f   # HMAC-MD5 over all bytes above
    21 14 00 00 02 00                   # ext 33 MN-FA, length 20, SPI 512
    11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11   # (opaque to the home agent)
    22 14 00 00 03 00                   # ext 34 FA-HA, length 20, SPI 768
    22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22
    """
)
# Offsets at which each extension of REQ_FULL starts (and so where a truncation is a valid end).
REQ_FULL_EXT_OFFSETS = (24, 25, 42, 47, 59, 81, 103)

# Deregistration of all bindings: lifetime 0 and care-of address == home address.
REQ_DEREG_ALL = hexbytes(
    """
    01 00 00 00                         # type 1, no flags, lifetime 0
    0a 01 00 05                         # home address 10.1.0.5
    0a 01 00 01                         # home agent 10.1.0.1
    0a 01 00 05                         # care-of address = home address: all bindings
    e8 fe 6f 80 00 00 00 03             # identification
    20 14 00 00 01 00                   # MN-HA, SPI 256
    51 cf 86 3c 57 0e 6a f2 81 dc d1 94 ec 27 d9 1f   # HMAC-MD5
    """
)

# A generalized MN-AAA authentication extension (RFC 3012, type 36, long format) and no MN-HA.
REQ_GENAUTH_ONLY = hexbytes(
    """
    01 00 07 08  0a 01 00 05  0a 01 00 01  c0 00 02 07   # header
    e8 fe 6f 80 00 00 00 04             # identification
    24 01 00 14                         # ext 36, subtype 1 (MN-AAA), 16-bit length 20
    00 00 01 00                         #   SPI 256
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00   # authenticator (not checked by the HA)
    """
)

# An unknown extension of type 100 (0-127: critical): the whole message is discarded.
REQ_UNKNOWN_CRITICAL = hexbytes(
    """
    01 00 07 08  0a 01 00 05  0a 01 00 01  c0 00 02 07   # header
    e8 fe 6f 80 00 00 00 05             # identification
    64 02 00 00                         # ext 100, length 2: not known, not skippable
    20 14 00 00 01 00                   # MN-HA, SPI 256
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
    """
)

# --- replies ----------------------------------------------------------------------------------

# What the home agent answers to REQ_HMAC at WALL: accepted, NAI echoed, HMAC-MD5 authenticator.
REP_HMAC = hexbytes(
    """
    03                                  # type 3: Registration Reply
    00                                  # code 0: accepted
    07 08                               # lifetime 1800
    0a 01 00 05                         # home address 10.1.0.5
    0a 01 00 01                         # home agent 10.1.0.1
    e8 fe 6f 80 80 00 00 00             # identification (the request's)
    83 0f 6d 6e 31 40 65 78 61 6d 70 6c 65 2e 6e 65 74   # ext 131 NAI
    20 14 00 00 01 00                   # ext 32 MN-HA, length 20, SPI 256
    88 74 76 50 7a e5 ab 24 50 8a c3 02 c1 cf 7c 58   # HMAC-MD5 over all bytes above
    """
)

# What the home agent answers to REQ_PS at WALL.
REP_PS = hexbytes(
    """
    03 00 02 58                         # type 3, code 0, lifetime 600
    0a 01 00 06  0a 01 00 01            # home address 10.1.0.6, home agent 10.1.0.1
    e8 fe 6f 80 00 00 00 01             # identification
    20 14 00 00 01 01                   # MN-HA, SPI 257
    c3 ae f3 0d 8c 07 c3 60 68 bb c5 8b f1 54 96 92   # MD5(key + bytes above + key)
    """
)

# The answer to REQ_STALE at WALL: 133, the HA's NTP seconds high, the request's low 32 bits.
REP_133 = hexbytes(
    """
    03                                  # type 3
    85                                  # code 133: registration identification mismatch
    00 00                               # lifetime 0
    0a 01 00 05  0a 01 00 01            # home address, home agent
    e8 fe 6f 80 12 34 56 78             # identification: HA seconds | request's low 32 bits
    20 14 00 00 01 00                   # MN-HA, SPI 256
    38 bf 24 05 20 43 09 3f 4c ef 05 cf 49 74 44 f2   # HMAC-MD5
    """
)

# The answer to REQ_DEREG_ALL at WALL.
REP_DEREG = hexbytes(
    """
    03 00 00 00                         # type 3, code 0, lifetime 0
    0a 01 00 05  0a 01 00 01            # home address, home agent
    e8 fe 6f 80 00 00 00 03             # identification
    20 14 00 00 01 00                   # MN-HA, SPI 256
    09 95 dc 63 e9 09 dc 25 8c e3 3d e1 ff 53 99 b1   # HMAC-MD5
    """
)
