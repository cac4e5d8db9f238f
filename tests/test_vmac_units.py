"""Virtual MAC pieces that need no root: who owns the macvlan, the duplicate filter, sysctls."""

from __future__ import annotations

import json
import os
from errno import ENETDOWN
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest
from recording_socket import RecordingSocket

from mobileip.config import DataplaneConfig, VrrpConfig
from mobileip.daemon.roles import NativeDriver, StaticDriver, make_driver, vmac_interface
from mobileip.dataplane.arp import ArpDuties
from mobileip.net import vmac as vm
from mobileip.net.sysctls import PersistedSysctls, netns_id
from mobileip.net.vrrp_socket import DUP_WINDOW, VrrpSettings, VrrpSpeaker

NATIVE = VrrpConfig(
    driver="native", interface="eth0", vrid=51, virtual_address=IPv4Interface("10.1.0.1/24")
)


def log(*args: object, **kw: object) -> None:
    pass


def test_the_native_speaker_owns_the_macvlan_only_with_virtual_mac() -> None:
    assert vmac_interface(NATIVE, None) is None
    assert vmac_interface(NATIVE, DataplaneConfig(home_interface="eth0")) is None
    on = DataplaneConfig(home_interface="eth0", virtual_mac=True)
    assert vmac_interface(NATIVE, on) == "vrrp.51"
    named = DataplaneConfig(home_interface="eth0", virtual_mac=True, vmac_interface="vm51")
    assert vmac_interface(NATIVE, named) == "vm51"
    # keepalived makes its own; with static the data plane does
    keepalived = VrrpConfig(driver="keepalived", notify_fifo="/f", instance="VI_1")
    assert vmac_interface(keepalived, on) is None
    assert vmac_interface(VrrpConfig(driver="static", role="active"), on) is None
    driver = make_driver(NATIVE, log, True, on)
    assert isinstance(driver, NativeDriver) and driver.vmac_interface == "vrrp.51"
    assert driver.status()["vmac"] == {"interface": "vrrp.51", "mac": None, "up": False}
    assert make_driver(NATIVE, log, True, None).status()["vmac"] is None
    assert isinstance(make_driver(VrrpConfig(driver="static", role="standby"), log, True, on),
                      StaticDriver)  # fmt: skip


def test_an_advert_read_on_both_sockets_counts_once() -> None:
    speaker = VrrpSpeaker(VrrpSettings("eth0", 51, 100, (IPv4Interface("10.1.0.1/24"),)))
    frame = b"advert"
    assert not speaker._duplicate(3, frame, 10.0)  # base
    assert speaker._duplicate(4, frame, 10.001)  # the same frame on the macvlan
    assert not speaker._duplicate(3, frame, 10.1)  # the next advert (same bytes) on the base
    assert not speaker._duplicate(4, frame, 10.1 + 2 * DUP_WINDOW)  # too late: another one
    assert not speaker._duplicate(4, b"other", 10.2)


def test_virtual_mac_and_names() -> None:
    assert vm.mac_text(vm.virtual_mac(51)) == "00:00:5e:00:01:33"
    assert vm.default_name(51) == "vrrp.51"
    with pytest.raises(ValueError):
        vm.virtual_mac(0)


def test_sysctls_restore_skips_a_device_that_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[tuple[str, str]] = []

    def write(path: str, value: str) -> None:
        if "gone" in path:
            raise FileNotFoundError(path)
        if "ro" in path:
            raise PermissionError(path)
        written.append((path, value))

    monkeypatch.setattr(vm.netlink, "write_sysctl", write)
    s = vm.Sysctls()
    s.saved = {"net/ipv4/conf/eth0/x": "0", "net/ipv4/conf/gone/x": "0", "net/ro/x": "1"}
    assert s.restore() == ["net/ro/x"]  # the vanished device is not a failure
    assert written == [("net/ipv4/conf/eth0/x", "0")] and not s.saved


class FlakySocket:
    """send() fails with the given errors first, then works."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.sent = 0

    def send(self, frame: bytes) -> int:
        if self.errors:
            raise OSError(self.errors.pop(0), os.strerror(ENETDOWN))
        self.sent += 1
        return len(frame)


def test_gratuitous_arp_survives_the_pending_error_of_a_link_that_came_up() -> None:
    arp = ArpDuties("vrrp.51", log)
    arp.mac = vm.virtual_mac(51)
    arp._sock = FlakySocket(ENETDOWN)  # type: ignore[assignment]
    arp.gratuitous(IPv4Address("10.77.128.2"))  # the one pending ENETDOWN, then sent
    assert arp.counters["garp-sent"] == 1 and not arp.counters["garp-errors"]
    arp._sock = FlakySocket(ENETDOWN, ENETDOWN)  # type: ignore[assignment]
    arp.gratuitous(IPv4Address("10.77.128.2"))  # really down: counted, not retried forever
    assert arp.counters["garp-errors"] == 1 and arp.counters["garp-sent"] == 1


def test_announce_reuses_one_packet_socket_until_release(monkeypatch: pytest.MonkeyPatch) -> None:
    RecordingSocket.made = []
    monkeypatch.setattr(vm.socket, "socket", RecordingSocket)
    v = vm.Vmac("vrrp.51", 7, vm.virtual_mac(51), "eth0", created=False)
    for last in range(2, 5):
        vm.announce(v, IPv4Address(f"10.77.128.{last}"))
    assert len(RecordingSocket.made) == 1  # not one per frame
    s = RecordingSocket.made[0]
    assert s.args[0] == vm.socket.AF_PACKET and not s.blocking
    assert [a for _, a in s.sent] == [("vrrp.51", vm.netlink.ETH_P_ARP)] * 3
    assert s.sent[0][0] == vm.netlink.gratuitous_arp_frame(v.mac, IPv4Address("10.77.128.2"))
    vm.release(v)  # adopted: no link change, no sysctl, only the socket goes
    assert s.closed and v.garp_socket is None
    vm.announce(v, IPv4Address("10.77.128.2"))  # a later announce opens a new one
    assert len(RecordingSocket.made) == 2


def test_persisted_sysctls_keep_meta_and_go_once_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[tuple[str, str]] = []
    monkeypatch.setattr(vm.netlink, "write_sysctl", lambda p, v: written.append((p, v)))
    path = tmp_path / "rec.json"
    first = PersistedSysctls(path)
    first.saved["net/ipv4/conf/eth0/arp_announce"] = "1"  # as set() leaves it
    first.meta = {"created": True, "devices": {"eth0": 2, "vrrp.51": 9}}
    first.write()
    # the killed run's record: the next run inherits originals and meta
    second = PersistedSysctls(path)
    assert second.inherited == {"net/ipv4/conf/eth0/arp_announce": "1"}
    assert second.inherited_meta == {"created": True, "devices": {"eth0": 2, "vrrp.51": 9}}
    assert vm._left_by_us(second.inherited_meta, "vrrp.51", 9)
    assert not vm._left_by_us(second.inherited_meta, "vrrp.51", 10)  # another device now
    assert not vm._left_by_us({"created": False, "devices": {"vrrp.51": 9}}, "vrrp.51", 9)
    assert vm._left_by_us({"created": True, "devices": {"vrrp.51": None}}, "vrrp.51", 9)
    # the macvlan is another device now (index 10): its recorded originals are forgotten, the
    # base's (same index) kept
    second.saved["net/ipv4/conf/vrrp.51/arp_ignore"] = "0"
    vm._forget_devices_that_moved(second, {"eth0": 2, "vrrp.51": 10})
    assert second.saved == {"net/ipv4/conf/eth0/arp_announce": "1"}
    assert second.restore() == [] and written == [("net/ipv4/conf/eth0/arp_announce", "1")]
    assert not path.exists()  # everything put back: the record goes (meta too)
    # a record from another boot is ignored
    path.write_text(json.dumps({"boot_id": "another", "saved": {"x": "1"}, "meta": {"a": 1}}))
    third = PersistedSysctls(path)
    assert third.inherited == {} and third.inherited_meta == {}


def test_netns_id_names_this_namespace() -> None:
    ident = netns_id()
    assert ident and ident == netns_id() and "/" not in ident
    assert vm.state_file("vrrp.51", True, Path("/d")) == Path(
        f"/d/vmac-sysctls-net{ident}-vrrp.51-owner.json"
    )
    assert vm.state_file("vrrp.51", False, Path("/d")).name.endswith("-vrrp.51-adopter.json")
