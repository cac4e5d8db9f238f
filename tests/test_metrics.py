"""``GET /metrics``: each metric moves when its event happens, on real daemons over loopback."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from helpers import DaemonHandle, running_homeagent, start_homeagent
from prometheus_client.parser import text_string_to_metric_families
from test_redundancy_loopback import member_configs, wait_until

from mobileip.agents.client import build_request
from mobileip.core.replay import ntp_from_unix
from mobileip.web.metrics import _dataplane_metrics, _role_metrics, redun_metric_name
from mobileip.wire import registration as wire

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(ha: DaemonHandle) -> Samples:
    return scrape_at(ha.control)


def scrape_at(control: tuple[str, int]) -> Samples:
    """``GET /metrics`` from the control server at ``control``: (name, labels) -> value."""
    host, port = control
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def send(ha: DaemonHandle, data: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        s.sendto(data, ha.address)
        try:
            return s.recv(2048)
        except TimeoutError:
            return None


def test_registration_security_and_table_metrics(tmp_path: Path) -> None:
    with running_homeagent(tmp_path, homeagent={"max_lifetime": 1}) as ha:
        before = scrape(ha)
        for reason in ("no-sa", "bad-authenticator", "bad-identification", "bad-spi"):
            assert (("mobileip_security_violations_total", frozenset({("reason", reason)}))) in (
                before
            )
        assert value(before, "mobileip_bindings") == 0

        # accepted registration: reply code 0 and one binding
        assert ha.client().register(60).code == 0
        after = scrape(ha)
        ok = {"code": "0", "meaning": "registration accepted"}
        assert value(after, "mobileip_registration_replies_total", **ok) == 1
        assert value(after, "mobileip_bindings") == 1
        assert value(after, "mobileip_binding_records") == 1
        assert value(after, "mobileip_udp_datagrams_total", socket="registration", event="sent")
        assert value(after, "mobileip_udp_datagrams_total", socket="registration", event="sent") > (
            value(before, "mobileip_udp_datagrams_total", socket="registration", event="sent")
        )

        # each security violation reason moves its own counter (and the 131/133 replies)
        cases = {
            "bad-authenticator": ha.client(home="10.1.0.6", key="ff" * 16),
            "no-sa": ha.client(home="10.9.0.6"),
        }
        for reason, client in cases.items():
            assert (
                client.register(
                    60,
                ).code
                == 131
            )
            assert value(scrape(ha), "mobileip_security_violations_total", reason=reason) == 1

        mn = ha.mobile_node(home="10.1.0.7")
        ident = ntp_from_unix(time.time())
        good = build_request(mn, 60, ident)
        assert send(ha, good) is not None
        reply = send(ha, good)  # the same identification again: a replay
        assert reply is not None and reply[1] == 133
        s = scrape(ha)
        assert value(s, "mobileip_security_violations_total", reason="bad-identification") == 1
        code133 = {"code": "133", "meaning": meaning_of(133)}
        assert value(s, "mobileip_registration_replies_total", **code133) == 1

        bad_spi = bytearray(good)
        bad_spi[-20:-16] = (999).to_bytes(4, "big")  # the MN-HA extension's SPI
        assert send(ha, bytes(bad_spi)) is not None
        assert value(scrape(ha), "mobileip_security_violations_total", reason="bad-spi") == 1

        header = wire.encode(wire.decode_request(good[: wire.REQUEST_HEADER_LEN]))
        assert send(ha, header) is not None  # no authentication extension at all
        assert (
            value(scrape(ha), "mobileip_security_violations_total", reason="missing-extension") == 1
        )

        # garbage is dropped and counted by reason
        assert send(ha, b"\x07junk") is None
        assert value(scrape(ha), "mobileip_datagrams_dropped_total", reason="unknown-type") == 1

        # expiry (max_lifetime 1 s): the gauge falls and the expired counter rises
        wait_until("bindings to expire", lambda: value(scrape(ha), "mobileip_bindings") == 0, 10)
        assert value(scrape(ha), "mobileip_bindings_expired_total") >= 2


def meaning_of(code: int) -> str:
    from mobileip.wire.codes import meaning

    return meaning(code)


def test_sync_metrics_move_with_updates_acks_queues_and_violations(tmp_path: Path) -> None:
    configs = member_configs(2)
    with ExitStack() as stack:
        a, b = (
            start_homeagent(tmp_path / f"m{i}", cfg, name=f"m{i}") for i, cfg in enumerate(configs)
        )
        for ha in (a, b):
            stack.callback(ha.stop, signal.SIGKILL)

        def synced(ha: DaemonHandle) -> bool:
            s = scrape(ha)
            return (
                value(s, "mobileip_ha_redun_state", state="SYNCED") == 1
                and sum(v for (n, _), v in s.items() if n == "mobileip_ha_redun_member_reachable")
                == 1
            )

        wait_until("both members SYNCED and reachable", lambda: synced(a) and synced(b))
        sa0, sb0 = scrape(a), scrape(b)
        assert value(sa0, "mobileip_ha_redun_state", state="NOT SYNCED") == 0

        assert a.client(home="10.1.2.1").register(600).code == 0
        wait_until("the update to reach b", lambda: len(b.bindings()) == 1)

        def acked() -> bool:
            return value(scrape(a), "mobileip_ha_redun_received_bu_acks_total") > value(
                sa0, "mobileip_ha_redun_received_bu_acks_total"
            )

        wait_until("a to get b's ack", acked)
        sa1, sb1 = scrape(a), scrape(b)
        for name in ("sent_bu", "sent_bu_total", "received_bu_acks"):
            metric = redun_metric_name(name) + "_total"
            assert value(sa1, metric) > value(sa0, metric), metric
        for name in ("received_bus", "sent_bu_acks"):
            metric = redun_metric_name(name) + "_total"
            assert value(sb1, metric) > value(sb0, metric), metric
        lag = value(sa1, "mobileip_ha_redun_sync_lag_seconds_count")
        assert lag >= 1
        lag_sum = value(sa1, "mobileip_ha_redun_sync_lag_seconds_sum")
        print(f"sync lag: {lag:.0f} samples, mean {lag_sum / lag * 1000:.2f} ms")
        assert 0 < lag_sum / lag < 5.0
        assert value(sa1, "mobileip_ha_redun_queue_depth", queue="total") == 0

        # a stopped member leaves the update pending: queue depth and per-member gauge rise
        b.proc.send_signal(signal.SIGSTOP)
        try:
            assert a.client(home="10.1.2.2").register(600).code == 0
            s = scrape(a)
            assert value(s, "mobileip_ha_redun_queue_depth", queue="total") >= 1
            pending = [
                v for (n, _), v in s.items() if n == "mobileip_ha_redun_member_pending_updates"
            ]
            assert pending == [1.0]
        finally:
            b.proc.send_signal(signal.SIGCONT)
        wait_until(
            "the queue to drain",
            lambda: value(scrape(a), "mobileip_ha_redun_queue_depth", queue="total") == 0,
        )
        assert value(scrape(a), "mobileip_ha_redun_sync_lag_seconds_count") > lag

        # a forged sync message (right shape, wrong key) is a security violation on b
        forged = bytes([64, 1, 0, 0, 0, 1, 0, 0]) + bytes(20) + bytes([40, 36])
        forged += (1000).to_bytes(4, "big") + b"\x00" * 32
        sync_port = int(configs[1]["redundancy"]["port"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s2:
            s2.sendto(forged, (b.host, sync_port))
        wait_until(
            "b to count the violation",
            lambda: (
                value(scrape(b), "mobileip_ha_redun_sec_violations_total")
                > value(sb1, "mobileip_ha_redun_sec_violations_total")
            ),
        )
        sb2 = scrape(b)
        assert value(sb2, "mobileip_ha_redun_dropped_total", reason="bad-authenticator") >= 1

        # member reachability: a stopped peer turns the gauge to 0
        b.stop(signal.SIGKILL)
        wait_until(
            "a to see b unreachable",
            lambda: (
                sum(
                    v
                    for (n, _), v in scrape(a).items()
                    if n == "mobileip_ha_redun_member_reachable"
                )
                == 0
            ),
        )


def test_role_metrics_read_the_role_service_status() -> None:
    status: dict[str, Any] = {
        "role": "active",
        "transitions": 3,
        "vrrp_state": "MASTER",
        "priority": {"configured": 100, "advertised": 90},
        "counters": {"adverts_sent": 7},
    }
    fams = {f.name: f for f in _role_metrics(SimpleNamespace(status=lambda: status))}
    role = {s.labels["state"]: s.value for s in fams["mobileip_role"].samples}
    assert role == {"active": 1.0, "standby": 0.0}
    assert fams["mobileip_role_transitions"].samples[0].value == 3
    vrrp = {s.labels["state"]: s.value for s in fams["mobileip_vrrp_state"].samples}
    assert vrrp == {"INITIALIZE": 0.0, "BACKUP": 0.0, "MASTER": 1.0}
    prio = {s.labels["kind"]: s.value for s in fams["mobileip_vrrp_priority"].samples}
    assert prio == {"advertised": 90, "configured": 100}
    status["role"], status["transitions"] = "standby", 4
    fams = {f.name: f for f in _role_metrics(SimpleNamespace(status=lambda: status))}
    role = {s.labels["state"]: s.value for s in fams["mobileip_role"].samples}
    assert role == {"active": 0.0, "standby": 1.0}
    assert fams["mobileip_role_transitions"].samples[0].value == 4
    assert list(_role_metrics(None)) == []


def test_dataplane_metrics_read_the_dataplane_status() -> None:
    status: dict[str, Any] = {
        "active": True,
        "tunnels": 2,
        "takeovers": 1,
        "backend": {"backend": "userspace", "counters": {"encap-ipip": 5, "drop-no-binding": 1}},
        "arp": {"counters": {"garp-sent": 3}},
    }
    fams = {f.name: f for f in _dataplane_metrics(SimpleNamespace(status=lambda: status))}
    packets = {s.labels["event"]: s.value for s in fams["mobileip_dataplane_packets"].samples}
    assert packets == {"encap-ipip": 5, "drop-no-binding": 1}
    assert fams["mobileip_dataplane_tunnels"].samples[0].value == 2
    assert fams["mobileip_dataplane_active"].samples[0].value == 1
    assert fams["mobileip_dataplane_takeovers"].samples[0].value == 1
    assert fams["mobileip_dataplane_arp"].samples[0].value == 3
    status["backend"]["counters"]["encap-ipip"] = 6
    fams = {f.name: f for f in _dataplane_metrics(SimpleNamespace(status=lambda: status))}
    packets = {s.labels["event"]: s.value for s in fams["mobileip_dataplane_packets"].samples}
    assert packets["encap-ipip"] == 6
    assert list(_dataplane_metrics(None)) == []
