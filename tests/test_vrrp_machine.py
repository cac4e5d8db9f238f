"""Sans-IO VRRPv3 state machine (RFC 5798 section 6)."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobileip.vrrp import (
    BecameBackup,
    BecameInitialize,
    BecameMaster,
    PeerClaimedMaster,
    SendAdvert,
    State,
    VrrpConfig,
    VrrpMachine,
    master_down_interval,
    skew_time,
)
from mobileip.wire.vrrp import Advertisement

VIP = IPv4Address("10.0.0.100")
ME = IPv4Address("10.0.0.2")
LOWER_IP = IPv4Address("10.0.0.1")
HIGHER_IP = IPv4Address("10.0.0.3")


def machine(priority: int = 100, interval: int = 100, **kw: bool) -> VrrpMachine:
    return VrrpMachine(VrrpConfig(51, priority, (VIP,), ME, advert_interval=interval, **kw))


def advert(priority: int, interval: int = 100, vrid: int = 51) -> Advertisement:
    return Advertisement(vrid, priority, interval, (VIP,))


def sent(outputs: Sequence[object]) -> list[int]:
    return [o.advert.priority for o in outputs if isinstance(o, SendAdvert)]


def test_timing_formulas() -> None:
    # Section 6.1 with Master_Adver_Interval 100 cs: Skew (256-100)*100/256 cs = 0.609375 s.
    assert skew_time(100, 100) == pytest.approx(0.609375)
    assert master_down_interval(100, 100) == pytest.approx(3.609375)
    assert skew_time(255, 1) == pytest.approx(1 / 256 / 100)
    assert master_down_interval(254, 1) == pytest.approx(0.03 + 2 / 256 / 100)


def test_startup_goes_backup_then_master_after_master_down_interval() -> None:
    m = machine()
    m.start(0.0)
    out = m.outputs()
    assert m.state is State.BACKUP
    assert isinstance(out[0], BecameBackup)
    assert m.next_timer() == pytest.approx(3.609375)
    m.handle_timer(3.0)  # early: nothing happens
    assert m.state is State.BACKUP and m.outputs() == []
    m.handle_timer(3.609375)
    out = m.outputs()
    assert m.state.value == "MASTER"
    assert sent(out) == [100]
    assert any(isinstance(o, BecameMaster) for o in out)
    assert m.next_timer() == pytest.approx(3.609375 + 1.0)


def test_owner_becomes_master_at_startup() -> None:
    m = machine(priority=255)
    m.start(5.0)
    out = m.outputs()
    assert m.state is State.MASTER
    assert sent(out) == [255]
    assert isinstance(out[-1], BecameMaster)
    assert m.accepts_virtual_traffic
    assert m.next_timer() == pytest.approx(6.0)


def test_accept_mode() -> None:
    m = machine(priority=200)
    m.start(0.0)
    m.handle_timer(10.0)
    assert m.state is State.MASTER and not m.accepts_virtual_traffic
    m2 = machine(priority=200, accept_mode=True)
    m2.start(0.0)
    m2.handle_timer(10.0)
    assert m2.accepts_virtual_traffic


def test_master_sends_adverts_on_timer() -> None:
    m = machine(interval=10)
    m.start(0.0)
    m.handle_timer(m.next_timer() or 0.0)
    m.outputs()
    t = m.next_timer()
    assert t is not None
    for _ in range(3):
        m.handle_timer(t)
        assert sent(m.outputs()) == [100]
        nt = m.next_timer()
        assert nt is not None and nt == pytest.approx(t + 0.1)
        t = nt


def test_backup_learns_master_adver_interval() -> None:
    m = machine(priority=100, interval=100)
    m.start(0.0)
    m.outputs()
    m.handle_advert(advert(200, interval=10), HIGHER_IP, 1.0)
    assert m.master_adver_interval == 10
    assert m.master_address == HIGHER_IP
    assert m.next_timer() == pytest.approx(1.0 + 0.3 + (156 * 10 / 256) / 100)
    assert m.outputs() == []


def test_backup_with_preempt_discards_lower_priority_and_takes_over() -> None:
    m = machine(priority=150)
    m.start(0.0)
    deadline = m.next_timer()
    m.handle_advert(advert(100), LOWER_IP, 1.0)
    assert m.next_timer() == deadline  # not reset
    assert m.counters["lower-priority-discarded"] == 1
    m.handle_timer(deadline or 0.0)
    assert m.state is State.MASTER


def test_backup_without_preempt_follows_lower_priority_master() -> None:
    m = machine(priority=150, preempt=False)
    m.start(0.0)
    m.handle_advert(advert(100), LOWER_IP, 3.0)
    assert m.next_timer() == pytest.approx(3.0 + m.master_down_interval)
    assert m.state is State.BACKUP


def test_backup_equal_priority_resets_timer() -> None:
    m = machine(priority=100)
    m.start(0.0)
    m.handle_advert(advert(100), LOWER_IP, 2.0)
    assert m.next_timer() == pytest.approx(2.0 + m.master_down_interval)


def test_priority_zero_makes_backup_wait_only_skew_time() -> None:
    m = machine(priority=100)
    m.start(0.0)
    m.handle_advert(advert(200), HIGHER_IP, 1.0)
    m.handle_advert(advert(0), HIGHER_IP, 2.0)
    assert m.next_timer() == pytest.approx(2.0 + 0.609375)
    m.handle_timer(2.0 + 0.609375)
    assert m.state is State.MASTER


def test_master_yields_to_higher_priority() -> None:
    m = machine(priority=100)
    m.start(0.0)
    m.handle_timer(10.0)
    m.outputs()
    m.handle_advert(advert(200, interval=50), HIGHER_IP, 11.0)
    out = m.outputs()
    assert m.state is State.BACKUP
    assert isinstance(out[0], BecameBackup) and out[0].master == HIGHER_IP
    assert m.master_adver_interval == 50
    assert m.next_timer() == pytest.approx(11.0 + master_down_interval(100, 50))
    assert sent(out) == []


@pytest.mark.parametrize(("src", "yields"), [(HIGHER_IP, True), (LOWER_IP, False)])
def test_master_equal_priority_higher_primary_address_wins(src: IPv4Address, yields: bool) -> None:
    m = machine(priority=100)
    m.start(0.0)
    m.handle_timer(10.0)
    m.outputs()
    m.handle_advert(advert(100), src, 10.5)
    assert (m.state is State.BACKUP) is yields


def test_master_hearing_lower_priority_asserts_and_reports_peer() -> None:
    m = machine(priority=200)
    m.start(0.0)
    m.handle_timer(10.0)
    m.outputs()
    m.handle_advert(advert(100), LOWER_IP, 10.2)
    out = m.outputs()
    assert m.state is State.MASTER
    assert PeerClaimedMaster(LOWER_IP, 100) in out
    assert sent(out) == [200]
    assert m.next_timer() == pytest.approx(11.2)


def test_master_hearing_priority_zero_advertises_at_once() -> None:
    m = machine(priority=200)
    m.start(0.0)
    m.handle_timer(10.0)
    m.outputs()
    m.handle_advert(advert(0), LOWER_IP, 10.5)
    assert sent(m.outputs()) == [200]
    assert m.state is State.MASTER
    assert m.next_timer() == pytest.approx(11.5)


def test_shutdown_of_master_sends_priority_zero() -> None:
    m = machine(priority=200)
    m.start(0.0)
    m.handle_timer(10.0)
    m.outputs()
    m.shutdown(12.0)
    out = m.outputs()
    assert sent(out) == [0]
    assert isinstance(out[-1], BecameInitialize)
    assert m.state is State.INITIALIZE
    assert m.next_timer() is None


def test_shutdown_of_backup_sends_nothing() -> None:
    m = machine()
    m.start(0.0)
    m.outputs()
    m.shutdown(1.0)
    out = m.outputs()
    assert sent(out) == []
    assert out == [BecameInitialize("shutdown")]
    m.shutdown(2.0)
    assert m.outputs() == []


def test_set_priority_takes_effect_in_next_advert() -> None:
    m = machine(priority=200)
    m.start(0.0)
    m.handle_timer(10.0)
    m.outputs()
    m.set_priority(50, 10.3)
    assert sent(m.outputs()) == [50]
    m.handle_timer(m.next_timer() or 0.0)
    assert sent(m.outputs()) == [50]
    with pytest.raises(ValueError):
        m.set_priority(0, 11.0)


def test_lowered_backup_does_not_preempt_synced_master() -> None:
    # A restarted member that is NOT SYNCED advertises a lowered priority: it follows the master.
    m = machine(priority=200)
    m.set_priority(50, 0.0)
    m.start(0.0)
    m.handle_advert(advert(100), LOWER_IP, 1.0)
    assert m.next_timer() == pytest.approx(1.0 + m.master_down_interval)
    m.set_priority(200, 2.0)  # SYNCED: back to its real priority, preempts at the next expiry
    m.handle_advert(advert(100), LOWER_IP, 2.5)
    assert m.counters["lower-priority-discarded"] == 1
    m.handle_timer(m.next_timer() or 0.0)
    assert m.state is State.MASTER


def test_ignores_other_vrid_own_adverts_and_mismatched_addresses() -> None:
    m = machine()
    m.start(0.0)
    deadline = m.next_timer()
    m.handle_advert(advert(200, vrid=52), HIGHER_IP, 1.0)
    m.handle_advert(advert(200), ME, 1.0)
    m.handle_advert(Advertisement(51, 200, 100, (IPv4Address("10.9.9.9"),)), HIGHER_IP, 1.0)
    assert m.next_timer() == deadline
    assert m.counters == {"other-vrid": 1, "own-advert": 1, "address-mismatch": 1}
    # From the address owner (255) a mismatch is logged but the advert is still obeyed.
    m.handle_advert(Advertisement(51, 255, 100, (IPv4Address("10.9.9.9"),)), HIGHER_IP, 1.0)
    assert m.next_timer() == pytest.approx(1.0 + m.master_down_interval)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        VrrpConfig(0, 100, (VIP,), ME)
    with pytest.raises(ValueError):
        VrrpConfig(1, 0, (VIP,), ME)
    with pytest.raises(ValueError):
        VrrpConfig(1, 100, (), ME)
    with pytest.raises(ValueError):
        VrrpConfig(1, 100, (VIP,), ME, advert_interval=4096)


class Net:
    """Several machines on one lossless segment, driven by a simulated clock."""

    def __init__(self, priorities: list[int], interval: int = 10) -> None:
        self.now = 0.0
        self.nodes = [
            VrrpMachine(VrrpConfig(7, p, (VIP,), IPv4Address(f"10.0.0.{i + 1}"), interval))
            for i, p in enumerate(priorities)
        ]
        self.alive = [True] * len(self.nodes)

    def deliver(self, sender: int) -> None:
        queue = [(sender, o) for o in self.nodes[sender].outputs()]
        while queue:
            src, out = queue.pop(0)
            if not isinstance(out, SendAdvert):
                continue
            for i, node in enumerate(self.nodes):
                if i != src and self.alive[i]:
                    node.handle_advert(out.advert, self.nodes[src].config.primary_address, self.now)
                    queue.extend((i, o) for o in node.outputs())

    def run_until(self, end: float) -> None:
        while True:
            timers = [
                (t, i)
                for i, n in enumerate(self.nodes)
                if self.alive[i] and (t := n.next_timer()) is not None
            ]
            if not timers:
                return
            t, i = min(timers)
            if t > end:
                self.now = end
                return
            self.now = t
            self.nodes[i].handle_timer(t)
            self.deliver(i)

    def masters(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if self.alive[i] and n.state is State.MASTER]


def test_simulated_group_elects_highest_and_fails_over() -> None:
    net = Net([100, 200, 150])
    for i, n in enumerate(net.nodes):
        n.start(0.0)
        net.deliver(i)
    net.run_until(2.0)
    assert net.masters() == [1]
    net.alive[1] = False  # crash, no priority 0
    crash = net.now
    net.run_until(crash + 2.0)
    assert net.masters() == [2]
    took_over = net.nodes[2]
    assert took_over.state is State.MASTER


def test_simulated_clean_shutdown_hands_over_within_skew_time() -> None:
    net = Net([100, 200, 150])
    for i, n in enumerate(net.nodes):
        n.start(0.0)
        net.deliver(i)
    net.run_until(2.0)
    net.nodes[1].shutdown(net.now)
    net.deliver(1)
    net.alive[1] = False
    t0 = net.now
    net.run_until(t0 + skew_time(150, 10) + 1e-9)
    assert net.masters() == [2]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 254), min_size=2, max_size=5), st.integers(1, 50))
def test_simulated_group_converges_to_one_master(prios: list[int], interval: int) -> None:
    net = Net(prios, interval)
    for i, n in enumerate(net.nodes):
        n.start(0.0)
        net.deliver(i)
    net.run_until(10 * interval / 100 + 5)
    masters = net.masters()
    assert len(masters) == 1
    # Equal-priority backups: whichever timer fires first wins and the other follows (6.4.2);
    # the address tie-break only applies between two masters.
    assert prios[masters[0]] == max(prios)
