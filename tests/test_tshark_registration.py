"""Wireshark agrees with our codec: capture our own registration traffic on loopback with tshark
and compare every field its Mobile IP dissector sees with what we sent and received.

A tiny in-test UDP responder feeds each datagram to a HomeAgentCore and sends back its reply.
Traffic stays on a 127.0.0.0/8 address picked for this run.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import vectors as v

from mobileip.core import homeagent as ha
from mobileip.core.replay import ntp_from_unix
from mobileip.core.security import (
    SecurityAssociation,
    SecurityAssociations,
    append_auth,
    verify_auth,
)
from mobileip.wire import registration as wire

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="capturing on lo needs root"),
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed"),
]

HMAC_SA = SecurityAssociation(v.HMAC_SPI, "hmac-md5", v.HMAC_KEY, (IPv4Network(v.HOME_PREFIX),))
PS_SA = SecurityAssociation(v.PS_SPI, "prefix-suffix-md5", v.PS_KEY, (IPv4Network(v.HOME_PREFIX),))


class Responder:
    """A UDP socket on (host, port) that answers with HomeAgentCore's replies."""

    def __init__(self, host: str, core: ha.HomeAgentCore) -> None:
        self.core = core
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, wire.UDP_PORT))
        except OSError:
            self.sock.bind((host, 0))  # 434 taken: any port, dissected with decode-as
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Responder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data, peer = self.sock.recvfrom(65535)
                except TimeoutError:
                    continue
                out = self.core.handle_request(data, time.monotonic(), time.time())
                if out.reply is not None:
                    self.sock.sendto(out.reply, peer)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


class Capture:
    """tshark writing a pcap of one BPF filter on lo; started only once it really captures."""

    def __init__(self, path: Path, bpf: str, probe: tuple[str, int]) -> None:
        self.path = path
        self.probe = probe
        self.proc = subprocess.Popen(
            ["tshark", "-i", "lo", "-f", bpf, "-F", "pcap", "-w", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_capturing(self, timeout: float = 20.0) -> None:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while "Capturing on" not in self.proc.stderr.readline():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tshark did not start capturing")
        # Probes (to a port nobody listens on) until the pcap grows past its 24-byte header:
        # from then on, everything we send is in the capture.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not (self.path.exists() and self.path.stat().st_size > 24):
                if time.monotonic() > deadline:
                    raise RuntimeError("tshark captures nothing")
                s.sendto(b"probe", self.probe)
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


@dataclass
class Dissected:
    """The mip fields of one packet as tshark shows them: name -> [(show, value), ...]."""

    src_port: int
    dst_port: int
    fields: dict[str, list[tuple[str, str]]]

    def show(self, name: str) -> list[str]:
        return [s for s, _ in self.fields.get(name, [])]

    def value(self, name: str) -> list[str]:
        return [val for _, val in self.fields.get(name, [])]


def dissect(pcap: Path, port: int) -> list[Dissected]:
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"udp.port=={port},mip", "-Y", "mip", "-T", "pdml"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    packets = []
    for pkt in ET.fromstring(out).iter("packet"):
        fields: dict[str, list[tuple[str, str]]] = {}
        ports: dict[str, int] = {}
        for f in pkt.iter("field"):
            name = f.get("name", "")
            if name in ("udp.srcport", "udp.dstport"):
                ports[name] = int(f.get("show", "0"))
            if name.startswith("mip."):
                fields.setdefault(name, []).append((f.get("show", ""), f.get("value", "")))
        packets.append(Dissected(ports["udp.srcport"], ports["udp.dstport"], fields))
    return packets


def problems(pcap: Path, port: int) -> str:
    """Packets tshark finds malformed or flags with an expert warning or error."""
    return subprocess.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-d",
            f"udp.port=={port},mip",
            "-Y",
            "_ws.malformed || _ws.expert.severity >= 0x00600000",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def ext_length(ext: wire.Extension) -> int:
    if isinstance(ext, wire.AuthExtension):
        return 4 + len(ext.authenticator)
    if isinstance(ext, wire.NaiExtension):
        return len(ext.nai)
    if isinstance(ext, wire.LongExtension | wire.UnknownExtension):
        return len(ext.data)
    raise AssertionError("pads are not sent: Wireshark 4.0 dissects type 0 as a short extension")


def assert_matches(pkt: Dissected, data: bytes) -> None:
    msg = wire.decode(data)
    is_request = isinstance(msg, wire.RegistrationRequest)
    assert pkt.show("mip.type") == ["1" if is_request else "3"]
    if isinstance(msg, wire.RegistrationRequest):
        assert pkt.value("mip.flags") == [f"{int(msg.flags):02x}"]
        assert pkt.show("mip.coa") == [str(msg.care_of_address)]
        assert pkt.show("mip.code") == []
    else:
        assert pkt.show("mip.code") == [str(msg.code)]
        assert pkt.show("mip.coa") == []
    assert pkt.show("mip.life") == [str(msg.lifetime)]
    assert pkt.show("mip.homeaddr") == [str(msg.home_address)]
    assert pkt.show("mip.haaddr") == [str(msg.home_agent)]
    assert pkt.value("mip.ident") == [f"{msg.identification:016x}"]
    assert pkt.show("mip.ext.type") == [str(e.type) for e in msg.extensions]
    assert pkt.show("mip.ext.len") == [str(ext_length(e)) for e in msg.extensions]
    auths = [e for e in msg.extensions if isinstance(e, wire.AuthExtension)]
    assert pkt.value("mip.auth.spi") == [f"{e.spi:08x}" for e in auths]
    assert pkt.value("mip.auth.auth") == [e.authenticator.hex() for e in auths]
    nais = [e for e in msg.extensions if isinstance(e, wire.NaiExtension)]
    assert pkt.value("mip.nai") == [e.nai.hex() for e in nais]


@dataclass(frozen=True)
class Case:
    name: str
    request: bytes
    code: int
    sa: SecurityAssociation | None  # what the reply is authenticated with


def cases() -> Iterator[Case]:
    counter = iter(range(1, 1000))

    def ident(skew: float = 0.0) -> int:
        return (ntp_from_unix(time.time() + skew) & ~0xFFFFFFFF) | next(counter)

    def req(
        *,
        sa: SecurityAssociation = HMAC_SA,
        home: IPv4Address = v.HOME,
        coa: IPv4Address = v.COA,
        home_agent: IPv4Address = v.HA,
        lifetime: int = 1800,
        flags: int = 0,
        skew: float = 0.0,
        exts: tuple[wire.Extension, ...] = (),
        after: tuple[wire.Extension, ...] = (),
    ) -> bytes:
        body = wire.encode(
            wire.RegistrationRequest(
                wire.Flags(flags), lifetime, home, home_agent, coa, ident(skew), exts
            )
        )
        return append_auth(body, wire.EXT_MN_HA_AUTH, sa) + wire.encode_extensions(after)

    nai = (wire.NaiExtension(v.NAI),)
    S, T = int(wire.Flags.S), int(wire.Flags.T)
    yield Case("accepted-hmac-nai", req(exts=nai), 0, HMAC_SA)
    yield Case(
        "accepted-prefix-suffix", req(sa=PS_SA, home=v.HOME_PS, flags=T, lifetime=600), 0, PS_SA
    )
    yield Case("wrong-key", req(sa=replace(HMAC_SA, key=bytes(16))), 131, None)
    yield Case("unknown-spi", req(sa=replace(HMAC_SA, spi=4242)), 131, None)
    yield Case("stale-timestamp", req(skew=-3600), 133, HMAC_SA)
    yield Case(
        "foreign-home-agent", req(home_agent=IPv4Address("10.9.9.9"), exts=nai), 136, HMAC_SA
    )
    yield Case("lifetime-capped", req(lifetime=5000, flags=S, exts=nai), 0, HMAC_SA)
    yield Case("second-coa", req(coa=v.COA2, flags=S | T), 0, HMAC_SA)
    yield Case("reserved-bit", req(flags=int(wire.Flags.r)), 134, None)
    extras = (
        wire.UnknownExtension(200, b"abc"),
        wire.LongExtension(wire.EXT_CVSE, 0, bytes.fromhex("00000009 0001 abcd")),
    )
    fa = (
        wire.AuthExtension(wire.EXT_MN_FA_AUTH, 0x200, b"\x11" * 16),
        wire.AuthExtension(wire.EXT_FA_HA_AUTH, 0x300, b"\x22" * 16),
    )
    yield Case("all-extension-kinds", req(exts=nai + extras, after=fa), 0, HMAC_SA)
    yield Case("deregister-one", req(coa=v.COA2, lifetime=0), 0, HMAC_SA)
    yield Case("deregister-all", req(coa=v.HOME, lifetime=0, exts=nai), 0, HMAC_SA)


def test_tshark_dissects_our_traffic_like_we_do(tmp_path: Path) -> None:
    host = f"127.43.{random.randint(0, 255)}.{random.randint(1, 254)}"
    core = ha.HomeAgentCore(
        ha.HomeAgentSettings(address=v.HA, max_simultaneous=2),
        SecurityAssociations([HMAC_SA, PS_SA]),
    )
    pcap = tmp_path / "registration.pcap"
    sent: list[bytes] = []
    with Responder(host, core) as responder:
        probe_port = responder.port + 1 if responder.port < 65535 else responder.port - 1
        bpf = f"udp and host {host} and (port {responder.port} or port {probe_port})"
        capture = Capture(pcap, bpf, (host, probe_port))
        try:
            capture.wait_capturing()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.bind((host, 0))
                client.settimeout(5)
                client_port = client.getsockname()[1]
                for case in cases():
                    client.sendto(case.request, (host, responder.port))
                    reply, peer = client.recvfrom(65535)
                    assert peer == (host, responder.port)
                    rep = wire.decode_reply(reply)
                    assert rep.code == case.code, case.name
                    if case.sa is not None:
                        ok, _ = verify_auth(reply, rep, wire.EXT_MN_HA_AUTH, case.sa)
                        assert ok, case.name
                    else:
                        assert wire.find_auth(rep, wire.EXT_MN_HA_AUTH) is None
                    sent += [case.request, reply]
            time.sleep(0.3)
        finally:
            capture.stop()
    assert responder.error is None
    assert core.table.live(int(v.HOME)) is None  # the final deregistration went through

    packets = dissect(pcap, responder.port)
    assert len(packets) == len(sent), "every request and reply is dissected as Mobile IP"
    for i, (pkt, data) in enumerate(zip(packets, sent, strict=True)):
        if i % 2 == 0:
            assert (pkt.src_port, pkt.dst_port) == (client_port, responder.port)
        else:  # replies go back to the request's source port
            assert (pkt.src_port, pkt.dst_port) == (responder.port, client_port)
        assert_matches(pkt, data)
    assert problems(pcap, responder.port) == ""
