"""The real daemon (``python -m mobileip homeagent``) on loopback, driven over UDP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import homeagent_config, running_homeagent, start_homeagent

from mobileip.agents.client import MobileNode, build_request, check_reply
from mobileip.config import to_toml
from mobileip.core.replay import NTP_EPOCH_OFFSET, ntp_from_unix
from mobileip.wire import registration as wire


def exchange(
    addr: tuple[str, int], data: bytes, timeout: float = 2.0
) -> tuple[bytes, tuple[str, int]]:
    """Send one datagram, return the first reply and where it came from."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, addr)
        reply, src = s.recvfrom(65535)
        return reply, (src[0], src[1])


def wait_until(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def test_register_show_and_deregister(homeagent: Any) -> None:
    ha = homeagent()
    client = ha.client(home="10.1.0.5", coa="192.0.2.10")
    result = client.register(600)
    assert (result.code, result.lifetime, result.authenticated) == (0, 600, True)
    assert result.home_agent == "10.1.0.1"

    rows = ha.bindings()
    assert len(rows) == 1
    row = rows[0]
    assert row["home_address"] == "10.1.0.5"
    assert row["care_of_address"] == "192.0.2.10"
    assert row["granted_lifetime"] == 600
    assert 598 <= row["remaining_lifetime"] <= 600
    assert row["home_agent"] == "10.1.0.1"
    assert row["identification"] == result.identification
    assert row["version"] > 0

    dereg = client.deregister()
    assert dereg.code == 0 and dereg.lifetime == 0
    assert ha.bindings() == []
    stats = ha.stats()
    assert stats["replies"] == {"0": 2}
    assert stats["bindings"] == 0
    assert "event=registration.accepted home=10.1.0.5 coa=192.0.2.10 lifetime=600" in ha.log()
    assert "event=deregistration.accepted home=10.1.0.5" in ha.log()


def test_reply_is_authenticated_and_sent_from_the_address_the_request_went_to(
    homeagent: Any,
) -> None:
    # Listening on 0.0.0.0, a request sent to 127.0.0.3 must be answered from 127.0.0.3
    # (IP_PKTINFO), not from whatever source the kernel would pick.
    ha = homeagent("0.0.0.0")
    mn = ha.mobile_node()
    ident = ntp_from_unix(time.time())
    for target in ("127.0.0.3", "127.0.0.1"):
        ident += 1
        data, src = exchange((target, ha.port), build_request(mn, 100, ident))
        assert src == (target, ha.port)
        check = check_reply(mn, data, ident)
        assert check.ok and check.authenticated, check.error
        assert check.reply is not None and check.reply.code == 0
    # the same reply fails verification with another key
    other = MobileNode(
        mn.home_address,
        mn.care_of_address,
        mn.home_agent,
        ha.mobile_node(key="ff" * 16).sa,
    )
    assert check_reply(other, data, ident).error == "reply authenticator is wrong"


def test_wrong_key_is_denied_131(homeagent: Any) -> None:
    ha = homeagent()
    mn = ha.mobile_node(key="ff" * 16)
    ident = ntp_from_unix(time.time())
    data, _ = exchange(ha.address, build_request(mn, 100, ident))
    reply = wire.decode_reply(data)
    assert reply.code == 131
    assert reply.identification == ident
    assert ha.stats()["security_violations"] == {"bad-authenticator": 1}
    assert ha.bindings() == []
    # the client reports it, marked unauthenticated (the HA cannot authenticate it)
    result = ha.client(key="ff" * 16).register(100)
    assert (result.code, result.authenticated) == (131, False)
    # unknown SPI and an SA that does not cover the home address are 131 too
    data, _ = exchange(ha.address, build_request(ha.mobile_node(home="10.9.0.5"), 100, ident))
    assert wire.decode_reply(data).code == 131
    assert ha.stats()["security_violations"]["no-sa"] == 1


def test_stale_and_replayed_identification_133_with_ha_time(homeagent: Any) -> None:
    ha = homeagent()
    mn = ha.mobile_node()
    stale = ntp_from_unix(time.time() - 100) | 0x1234
    data, _ = exchange(ha.address, build_request(mn, 100, stale))
    check = check_reply(mn, data, stale)
    assert check.ok and check.reply is not None
    assert check.reply.code == 133
    ha_seconds = (check.reply.identification >> 32) - NTP_EPOCH_OFFSET
    assert abs(ha_seconds - time.time()) < 3  # the HA's time in the high 32 bits
    assert check.reply.identification & 0xFFFFFFFF == stale & 0xFFFFFFFF

    fresh = ntp_from_unix(time.time())
    request = build_request(mn, 100, fresh)
    data, _ = exchange(ha.address, request)
    assert wire.decode_reply(data).code == 0
    data, _ = exchange(ha.address, request)  # the same request again: a replay
    replayed = check_reply(mn, data, fresh)
    assert replayed.reply is not None and replayed.reply.code == 133
    assert ha.stats()["security_violations"]["bad-identification"] == 2

    # a client whose clock is 100 s late adopts the HA's clock from the 133 and succeeds
    client = ha.client()
    client.ids.clock_offset = -100.0
    result = client.register(100)
    assert result.code == 0 and result.retried_133


def test_foreign_home_agent_field_136(homeagent: Any) -> None:
    ha = homeagent()
    result = ha.client(ha_field="10.1.0.99").register(100)
    assert result.code == 136 and result.authenticated
    assert ha.bindings() == []


def test_lifetime_capped_then_binding_expires(homeagent: Any) -> None:
    ha = homeagent(homeagent={"max_lifetime": 1})
    result = ha.client().register(600)
    assert (result.code, result.lifetime) == (0, 1)
    rows = ha.bindings()
    assert len(rows) == 1 and rows[0]["granted_lifetime"] == 1
    assert wait_until(lambda: ha.bindings() == [], timeout=4.0)
    assert ha.stats()["expired"] == 1
    assert "event=binding.expired home=10.1.0.5" in ha.log()


@pytest.mark.parametrize("replay", ["timestamp", "nonce"])
def test_both_algorithms_and_replay_modes(homeagent: Any, replay: str) -> None:
    sas = [
        {"spi": 256, "algorithm": "hmac-md5", "key": "00" * 16, "home_addresses": ["10.1.0.0/24"]},
        {
            "spi": 4000,
            "algorithm": "prefix-suffix-md5",
            "key": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "home_addresses": ["10.2.0.0/24"],
        },
    ]
    ha = homeagent(homeagent={"replay": replay}, security_association=sas)
    for sa, home in ((0, "10.1.0.7"), (1, "10.2.0.7")):
        first = ha.client(home=home, sa=sa).register(300)
        assert first.code == 0, first
        # nonce mode: a new mobile node learns the HA's nonce from a 133 first
        assert first.retried_133 == (replay == "nonce")
        # a fresh client (no state) for the same mobile node: 133 once in nonce mode, then 0
        again = ha.client(home=home, sa=sa, coa="192.0.2.77").register(300)
        assert again.code == 0, again
        assert again.retried_133 == (replay == "nonce")
    homes = sorted(r["home_address"] for r in ha.bindings())
    assert homes == ["10.1.0.7", "10.2.0.7"]
    assert all(r["care_of_address"] == "192.0.2.77" for r in ha.bindings())
    # the wrong algorithm for an SA is a failed authentication
    mn = ha.mobile_node(home="10.2.0.8", sa=1)
    wrong = MobileNode(
        mn.home_address,
        mn.care_of_address,
        mn.home_agent,
        type(mn.sa)(mn.sa.spi, "hmac-md5", mn.sa.key, mn.sa.prefixes),
        replay,
    )
    data, _ = exchange(ha.address, build_request(wrong, 10, ntp_from_unix(time.time())))
    assert wire.decode_reply(data).code == 131


def test_garbage_is_counted_and_dropped_while_serving(homeagent: Any) -> None:
    ha = homeagent()
    mn = ha.mobile_node()
    good = build_request(mn, 100, ntp_from_unix(time.time()))
    garbage = [
        b"",
        b"\x07hello",
        b"\x03" + b"\x00" * 30,  # a reply sent to the HA
        b"\x01\x00",  # truncated request
        os.urandom(200).replace(b"\x01", b"\x02", 1),
        good[:24] + b"\x05\x02ab",  # unknown critical extension: discard silently
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for g in garbage:
            s.sendto(g, ha.address)
    # a request whose header is intact but whose extension is truncated gets 134
    data, _ = exchange(ha.address, good[:24] + b"\x20\x14\x00\x00")
    assert wire.decode_reply(data).code == 134
    # and the daemon still serves
    assert ha.client().register(100).code == 0
    stats = ha.stats()
    dropped = stats["dropped"]
    assert dropped.get("empty") == 1
    assert dropped.get("unknown-type", 0) >= 2
    assert dropped.get("truncated") == 1
    assert dropped.get("unknown-critical-extension") == 1
    assert dropped.get("truncated-extension") == 1
    assert stats["udp"]["received"] == len(garbage) + 2
    assert ha.proc.poll() is None


def test_bad_config_exits_2_naming_file_key_and_line(tmp_path: Path) -> None:
    config = homeagent_config()
    config["security_association"][0]["key"] = "not-hex"
    path = tmp_path / "bad.toml"
    path.write_text(to_toml(config))
    line = next(
        i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("key =")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mobileip", "homeagent", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert str(path) in proc.stderr
    assert "security_association[0].key" in proc.stderr
    assert f"line {line}" in proc.stderr
    assert "hex" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_status_0(tmp_path: Path, sig: int) -> None:
    with running_homeagent(tmp_path) as ha:
        assert ha.client().register(100).code == 0
        assert ha.stop(sig) == 0
        assert "event=homeagent.stopped bindings=1" in ha.log()


def test_json_logs(tmp_path: Path) -> None:
    handle = start_homeagent(tmp_path, homeagent_config(), args=("--log-format", "json"))
    try:
        assert handle.client().register(100).code == 0
    finally:
        assert handle.stop() == 0
    events = [json.loads(line) for line in handle.log().splitlines()]
    accepted = [e for e in events if e["event"] == "registration.accepted"]
    assert accepted and accepted[0]["home"] == "10.1.0.5" and accepted[0]["level"] == "info"


def test_port_in_use_is_an_error_not_a_hang(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        config = homeagent_config()
        config["homeagent"]["port"] = s.getsockname()[1]
        path = tmp_path / "busy.toml"
        path.write_text(to_toml(config))
        proc = subprocess.run(
            [sys.executable, "-m", "mobileip", "homeagent", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1
    assert "event=homeagent.failed" in proc.stderr
