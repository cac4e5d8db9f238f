"""Write raw IPv4 packets to a pcap file and read fields back with tshark (tests only)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address
from pathlib import Path

LINKTYPE_IPV4 = 228


def ipv4_udp(
    payload: bytes,
    src: IPv4Address | str,
    dst: IPv4Address | str,
    sport: int = 40000,
    dport: int = 434,
) -> bytes:
    """An IPv4 header (checksum filled in) and a UDP header (checksum 0) around ``payload``."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
        IPv4Address(src).packed, IPv4Address(dst).packed,
    )  # fmt: skip
    csum = sum(struct.unpack("!10H", head))
    while csum > 0xFFFF:
        csum = (csum & 0xFFFF) + (csum >> 16)
    return head[:10] + struct.pack("!H", ~csum & 0xFFFF) + head[12:] + udp


def write_pcap(path: Path, packets: Iterable[bytes]) -> None:
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_IPV4))
        for n, pkt in enumerate(packets):
            f.write(struct.pack("<IIII", n, 0, len(pkt), len(pkt)) + pkt)


def tshark_fields(path: Path, fields: Sequence[str], *prefs: str) -> list[list[str]]:
    """One row per frame, one column per field (multiple occurrences joined by commas)."""
    tshark = shutil.which("tshark")
    assert tshark is not None
    cmd = [tshark, "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "separator=\t"]
    for pref in prefs:
        cmd += ["-o", pref]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def tshark_rows(path: Path, fields: Sequence[str]) -> list[dict[str, str]]:
    """:func:`tshark_fields` with each frame as a dict keyed by field name."""
    return [dict(zip(fields, r, strict=False)) for r in tshark_fields(path, fields)]


def read_capture_until(
    path: Path,
    fields: Sequence[str],
    done: Callable[[list[dict[str, str]]], bool],
    timeout: float = 20.0,
) -> list[dict[str, str]]:
    """Read a capture still being written (dumpcap writes its file in batches) every 0.5 s, one
    dict per frame keyed by field, until ``done(rows)`` or ``timeout``; the last rows read."""
    rows: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            rows = tshark_rows(path, fields)
        except subprocess.CalledProcessError:
            continue  # the last packet half-written
        if done(rows):
            break
    return rows
