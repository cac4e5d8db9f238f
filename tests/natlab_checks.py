"""The steps tests/test_kernel_nat.py (mobile node behind the NAT) and tests/test_kernel_nat_fa.py
(foreign agent behind it) share on a :class:`mobileip.tools.natlab.NatLab`: the lab's life (a
failure prints each daemon's last lines; the namespaces are always removed), tshark on the
router's public side, the binding's NAT mapping on both members, keepalives through an idle
period, a NAT rebind and a failover under the ping; tests/test_kernel_nat_hybrid.py (the same
with the kernel backend) too."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pcapio import tshark_fields

from mobileip.tools.lab import Proc, _ip
from mobileip.tools.natlab import KEEPALIVE, NAT_PUBLIC, UDP_TIMEOUT, VIRTUAL, NatLab

OUTAGE_BOUND_S = 3.0  # VRRP at 0.1 s: Master_Down ~0.36 s; UML's one CPU runs everything


@contextlib.contextmanager
def running(lab: NatLab) -> Iterator[NatLab]:
    """Set the lab up with both Home Agents started; on failure print each daemon's last 25
    lines; always tear it down and check no namespace of ours is left."""
    try:
        lab.setup()
        lab.start_home_agents()
        yield lab
    except BaseException:
        for label, proc in lab.procs.items():
            print(f"--- {label}\n" + "\n".join(t for _, t in proc.lines[-25:]))
        raise
    finally:
        with contextlib.suppress(Exception):
            lab.teardown()
    assert not [ns for ns in lab.namespaces if ns.startswith(lab.prefix)]


def capture_public(lab: NatLab) -> tuple[Path, Proc]:
    """tshark on the router's public side (eth2), registration port only; waits until it runs."""
    pcap = lab.work / "public.pcap"
    capture = lab.spawn(
        "rt", ["tshark", "-n", "-i", "eth2", "-f", "udp port 434", "-w", str(pcap)], "tshark"
    )
    capture.wait_for("Capturing on", 60)
    return pcap, capture


def stop_capture(capture: Proc) -> None:
    time.sleep(1.0)  # the last packets reach the file
    capture.popen.terminate()
    capture.popen.wait(30)


def first_mapping(lab: NatLab) -> tuple[list[str], str]:
    """Both members hold the same NAT mapping (the standby's through the sync protocol), one
    public address:port from the NAT's first port range."""
    lab._wait(lambda: bool(lab.mapping("ha1") and lab.mapping("ha2")), 30, "both mappings")
    first = lab.mapping("ha1")
    assert first == lab.mapping("ha2")
    [public] = first
    address, port = public.split(":")
    assert address == NAT_PUBLIC and 20000 <= int(port) <= 20999, first
    if lab.nat_engine == "masquerade":  # the mapping is the MASQUERADE rule's work
        assert lab.masqueraded() >= 1, "no flow through the MASQUERADE rule"
    print(f"NAT {lab.nat_engine}: mapping {public}, {lab.masqueraded()} flows through MASQUERADE")
    return first, public


def assert_answered(ping: dict[str, Any]) -> None:
    assert ping["received"] >= ping["sent"] - 2 > 0, ping


def keepalives_hold(lab: NatLab, first: list[str]) -> None:
    """Idle for longer than the NAT's UDP timeout: keepalives flow, the mapping stays the same
    (the NAT never dropped it) and the ping is still answered."""
    kept = lab.nat_status("ha1")["counters"].get("udp-keepalive", 0)
    time.sleep(UDP_TIMEOUT * 2.5)
    keepalives = lab.nat_status("ha1")["counters"].get("udp-keepalive", 0) - kept
    assert keepalives >= UDP_TIMEOUT, keepalives
    assert lab.mapping("ha1") == first
    idle = lab.ping(1.0)
    print(f"ping after {UDP_TIMEOUT * 2.5:.0f} s idle ({keepalives} keepalives): {idle}")
    assert_answered(idle)


def rebind(lab: NatLab, first: list[str]) -> list[str]:
    """The NAT's table flushed and its port range moved: the next keepalive leaves on a new port,
    the active Home Agent moves the binding there (a replicated new version), the ping is still
    answered. Returns the moved mapping."""
    lab.translate("21000-21999")
    lab.flush_conntrack()
    lab._wait(
        lambda: lab.mapping("ha1") != first and lab.mapping("ha2") == lab.mapping("ha1"),
        30,
        "the rebind on both members",
    )
    moved = lab.mapping("ha1")
    assert moved[0].startswith(f"{NAT_PUBLIC}:21"), moved
    assert lab.nat_status("ha1")["counters"].get("udp-rebind", 0) >= 1
    if lab.nat_engine == "masquerade":  # the new port came from the reloaded rule
        assert lab.masqueraded() >= 1, "no flow through the reloaded MASQUERADE rule"
    rebound = lab.ping(1.0)
    print(f"ping after the NAT rebound to {moved[0]}: {rebound}")
    assert_answered(rebound)
    return moved


def failover(lab: NatLab, moved: list[str], who: str) -> dict[str, Any]:
    """ha1 cut and SIGKILLed under the ping: ha2 carries on through the same mapping, UDP tunnel
    traffic both ways, the outage under ``OUTAGE_BOUND_S``. Returns the ping result."""
    result = lab.failover()
    after = lab.nat_status("ha2")
    print(
        f"failover with {who} behind the NAT: ping outage {result['outage_ms']} ms "
        f"(longest gap {result['max_gap_ms']} ms), sent {result['sent']}, received "
        f"{result['received']}, lost {result['lost']}; ha2 data plane: {after['counters']}"
    )
    assert after["counters"].get("udp-encap", 0) > 0 and after["counters"].get("udp-decap")
    assert lab.mapping("ha2") == moved
    assert result["received"] > 0 and result["outage_ms"] < OUTAGE_BOUND_S * 1e3, result
    return result


def register_and_ping(
    lab: NatLab, start: Callable[[], None], fields: Sequence[str], what: str
) -> tuple[list[str], str, list[list[str]]]:
    """tshark on the public side while ``start`` brings the node(s) up and registers; both
    members hold the first mapping; the correspondent's ping is answered through the tunnel.
    Returns the mapping, its public address:port and the capture's ``fields`` rows."""
    pcap, capture = capture_public(lab)
    start()
    first, public = first_mapping(lab)
    before = lab.ping(2.0)
    print(f"ping {what}: {before}")
    assert_answered(before)
    stop_capture(capture)
    return first, public, tshark_fields(pcap, list(fields))


def tunnel_data(rows: list[list[str]], src: int) -> tuple[list[list[str]], list[list[str]]]:
    """The tunnel data rows (``mip.type`` 4 in column 0): from the Home Agent (the virtual
    address) and from the NAT's public address, by the ``ip.src`` column ``src``."""
    data = [r for r in rows if r[0] == "4"]
    return (
        [r for r in data if r[src].startswith(VIRTUAL)],
        [r for r in data if r[src].startswith(NAT_PUBLIC)],
    )


def granted_and_tunnelled(
    rows: list[list[str]], *, code: int, keepalive: int, nexthdr: int, src: int
) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """Capture rows whose column 0 is ``mip.type`` and 1 ``mip.code``: registration replies with
    a UDP Tunnel Reply (column ``code``) 0 and our keepalive interval (column ``keepalive``), and
    tunnel data both ways (:func:`tunnel_data` by column ``src``), next header (column
    ``nexthdr``) 4. Returns the replies, the data to the NAT and the data from it."""
    replies = [r for r in rows if r[0] == "3" and r[code] == "0"]
    assert replies and replies[0][1] == "0" and replies[0][keepalive] == str(KEEPALIVE), rows[:5]
    to, back = tunnel_data(rows, src)
    assert to and back and all(r[nexthdr] == "4" for r in to + back), rows[:5]
    return replies, to, back


def idle_rebind_failover(
    lab: NatLab, first: list[str], who: str
) -> tuple[list[str], dict[str, Any]]:
    """Keepalives through an idle period, a NAT rebind, then a failover under the ping; ha1's
    link back up afterwards. Returns the moved mapping and the failover's ping result."""
    keepalives_hold(lab, first)
    moved = rebind(lab, first)
    result = failover(lab, moved, who)
    _ip("-n", lab.ns("hub"), "link", "set", "p-ha1-0", "up")
    return moved, result
