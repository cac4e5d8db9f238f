"""NAT-ed mobile nodes (RFC 3519) in the seeded fault simulator: mappings converge, none resurrects.

Every simulator run has NAT-ed mobile nodes (tools/sim.py): registrations carry a NAT mapping
(``Binding.udp_address``, ``udp_port``), their NATs rebind (a keepalive from a new port makes
``HomeAgentCore.nat_rebind`` write a new version), under loss, partitions and crashes. The CI
sweep in tests/test_sim.py runs them under every fault; here a few seeds directly, that the runs
did register and rebind, and that the invariant can fail.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from mobileip.core.bindings import BindingTable, MobilityRecord
from mobileip.core.homeagent import BindingChanged, Event, HomeAgentCore
from mobileip.tools.sim import members_for, replay_command, run_seed

SEEDS = range(40)


@pytest.mark.parametrize("mode", ["async", "semisync"])
def test_nat_mappings_converge_under_faults(mode: str) -> None:
    failures = []
    registrations = rebinds = 0
    for seed in SEEDS:
        report = run_seed(seed, mode=mode, members=members_for(seed))
        registrations += report.nat_registrations
        rebinds += report.nat_rebinds
        if not report.ok:
            cmd = replay_command(seed, mode, members_for(seed))
            failures.append(f"{cmd}\n  " + "\n  ".join(report.violations))
    assert not failures, "\n".join(failures)
    print(f"\n{mode}: NAT registrations {registrations}, rebinds {rebinds}")
    assert registrations > 20 * len(SEEDS)
    assert rebinds > 2 * len(SEEDS)


def test_crashes_lose_nat_changes_and_no_older_mapping_comes_back() -> None:
    """Some seeds lose a NAT change with a member that crashed before replicating it; the group
    still converges on an accepted (version, mapping), never older than what survived."""
    lost = 0
    for seed in range(200, 240):
        report = run_seed(seed, mode="async", members=members_for(seed))
        assert report.ok, report.violations
        lost += report.nat_lost
    assert lost > 0  # deterministic: these seeds do crash after a NAT change


def test_the_invariant_catches_a_rebind_without_a_new_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebind that moves the mapping in place (same version) never replicates: caught."""

    def rebind_in_place(
        self: HomeAgentCore, home: int, old: tuple[int, int], new: tuple[int, int], now: float
    ) -> list[Event]:
        rec = self.table.get(home)
        assert rec is not None
        bindings = tuple(
            replace(b, udp_address=new[0], udp_port=new[1])
            if (b.udp_address, b.udp_port) == old
            else b
            for b in rec.bindings
        )
        self.table.store(replace(rec, bindings=bindings), now)
        return [BindingChanged(self.table.get(home) or rec, False)]

    monkeypatch.setattr(HomeAgentCore, "nat_rebind", rebind_in_place)
    reports = [run_seed(seed, "async", members_for(seed)) for seed in range(12)]
    assert any("mapping" in v or "table differs" in v for r in reports for v in r.violations), [
        r.violations for r in reports
    ]


def test_the_invariant_catches_replication_that_drops_the_mapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A member that applies replicated records without their NAT mapping is caught."""
    merge = BindingTable.merge

    def merge_without_udp(self: BindingTable, rec: MobilityRecord, now: float) -> bool:
        plain = tuple(replace(b, udp_address=0, udp_port=0) for b in rec.bindings)
        return merge(self, replace(rec, bindings=plain), now)

    monkeypatch.setattr(BindingTable, "merge", merge_without_udp)
    reports = [run_seed(seed, "async", members_for(seed)) for seed in range(6)]
    assert any("mapping" in v for r in reports for v in r.violations), [
        r.violations for r in reports
    ]
