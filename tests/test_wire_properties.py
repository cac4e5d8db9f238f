"""Property tests (hypothesis) of the registration codec: total decoders, exact round trips."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import vectors as v
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobileip.core import homeagent as ha
from mobileip.core.security import SecurityAssociation, SecurityAssociations
from mobileip.wire import registration as wire
from mobileip.wire.errors import DecodeError

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)
addresses = u32.map(IPv4Address)

extensions: st.SearchStrategy[wire.Extension] = st.one_of(
    st.just(wire.PadExtension()),
    st.builds(
        wire.AuthExtension,
        type=st.sampled_from(sorted(wire.AUTH_TYPES)),
        spi=u32,
        authenticator=st.binary(max_size=251),
    ),
    st.builds(wire.NaiExtension, nai=st.binary(max_size=255)),
    st.builds(
        wire.LongExtension,
        type=st.sampled_from(sorted(wire.LONG_TYPES)),
        subtype=u8,
        data=st.binary(max_size=300),
    ),
    st.builds(
        wire.UnknownExtension,
        type=st.integers(128, 255).filter(lambda t: t != wire.EXT_MN_NAI),
        data=st.binary(max_size=255),
    ),
)
extension_lists = st.lists(extensions, max_size=6).map(tuple)

requests = st.builds(
    wire.RegistrationRequest,
    flags=u8.map(wire.Flags),
    lifetime=u16,
    home_address=addresses,
    home_agent=addresses,
    care_of_address=addresses,
    identification=u64,
    extensions=extension_lists,
)
replies = st.builds(
    wire.RegistrationReply,
    code=u8,
    lifetime=u16,
    home_address=addresses,
    home_agent=addresses,
    identification=u64,
    extensions=extension_lists,
)
messages: st.SearchStrategy[wire.Message] = st.one_of(requests, replies)


@st.composite
def datagrams(draw: st.DrawFn) -> bytes:
    """Bytes that reach every part of the decoder: pure noise, noise behind a valid header,
    and valid messages truncated, extended or with a few bytes changed."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.binary(max_size=120))
    if kind == 1:
        head = draw(st.sampled_from([v.REQ_HMAC[:24], v.REP_HMAC[:20]]))
        return head + draw(st.binary(max_size=80))
    data = bytearray(wire.encode(draw(messages)))
    for _ in range(draw(st.integers(0, 3))):
        if data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(u8)
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=8))


def check_offsets(msg: wire.Message, data: bytes) -> None:
    start = wire.REQUEST_HEADER_LEN if isinstance(msg, wire.RegistrationRequest) else 20
    assert len(msg.ext_offsets) == len(msg.extensions)
    assert list(msg.ext_offsets) == sorted(set(msg.ext_offsets))
    pos = start
    for ext, off in zip(msg.extensions, msg.ext_offsets, strict=True):
        assert off == pos and data[off] == ext.type
        pos += len(wire.encode_extension(ext))
    assert pos == len(data)


@PROFILE
@given(datagrams())
def test_decode_gives_message_or_decode_error(data: bytes) -> None:
    for decoder in (wire.decode, wire.decode_request, wire.decode_reply):
        try:
            msg = decoder(data)
        except DecodeError as exc:
            assert exc.code in (None, 134)
            assert exc.reason
            continue
        assert isinstance(msg, wire.RegistrationRequest | wire.RegistrationReply)
        # every byte string that decodes re-encodes to itself
        assert wire.encode(msg) == data
        check_offsets(msg, data)


@PROFILE
@given(st.binary(max_size=300), st.data())
def test_decode_extensions_total(data: bytes, draw: st.DataObject) -> None:
    start = draw.draw(st.integers(0, len(data)))
    try:
        exts, offsets = wire.decode_extensions(data, start)
    except DecodeError:
        return
    assert wire.encode_extensions(exts) == data[start:]
    assert len(offsets) == len(exts)


@PROFILE
@given(messages)
def test_round_trip(msg: wire.Message) -> None:
    data = wire.encode(msg)
    back = wire.decode(data)
    assert back == msg
    assert type(back) is type(msg)
    assert wire.encode(back) == data
    check_offsets(back, data)


@PROFILE
@given(extension_lists)
def test_extensions_round_trip(exts: tuple[wire.Extension, ...]) -> None:
    data = wire.encode_extensions(exts)
    decoded, offsets = wire.decode_extensions(data, 0)
    assert decoded == exts
    assert len(offsets) == len(exts)


SA = SecurityAssociation(v.HMAC_SPI, "hmac-md5", v.HMAC_KEY, (IPv4Network(v.HOME_PREFIX),))


@PROFILE
@given(datagrams())
def test_home_agent_never_crashes_on_garbage(data: bytes) -> None:
    core = ha.HomeAgentCore(
        ha.HomeAgentSettings(address=v.HA), SecurityAssociations([SA]), next_nonce=lambda: 7
    )
    out = core.handle_request(data, 1.0, v.WALL)
    if out.reply is None:
        assert out.code is None
        assert any(isinstance(e, ha.DatagramDropped) for e in out.events)
    else:
        rep = wire.decode_reply(out.reply)
        assert rep.code == out.code
        assert rep.home_agent == v.HA
