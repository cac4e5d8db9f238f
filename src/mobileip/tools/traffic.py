"""Measured test traffic for the lab: ICMP echo and a UDP stream with sequence numbers.

``python -m mobileip.tools.traffic ping DEST --interval 0.01 --duration 10`` sends echo requests on
a raw ICMP socket and prints one JSON line: sent, received, lost and the longest gap between two
consecutive replies (the outage, in ms). ``udp-send DEST PORT`` and ``udp-recv PORT`` do the same
for a UDP stream (the receiver measures). ``--until-file F`` stops when F exists (the lab uses it
to stop the traffic after the failover). One line ``ready`` on stderr when the socket is up.
No machine has ``ping`` installed here, and we want numbers rather than text to parse anyway.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    head = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    csum = _checksum(head + payload)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, csum, ident, seq) + payload


@dataclass
class Tally:
    """Arrivals of sequence-numbered packets: losses and the longest silence."""

    sent: int = 0
    seen: set[int] = field(default_factory=set)
    first: float | None = None
    last: float | None = None
    max_gap: float = 0.0
    gap_at: float | None = None  # when the longest silence ended (monotonic)

    def arrived(self, seq: int, now: float) -> None:
        if seq in self.seen:
            return
        self.seen.add(seq)
        if self.last is not None and now - self.last > self.max_gap:
            self.max_gap = now - self.last
            self.gap_at = now
        if self.first is None:
            self.first = now
        self.last = now

    def report(self, kind: str, interval: float) -> dict[str, object]:
        received = len(self.seen)
        return {
            "kind": kind,
            "sent": self.sent,
            "received": received,
            "lost": max(0, self.sent - received) if self.sent else None,
            "max_gap_ms": round(self.max_gap * 1000, 1),
            # the outage: the longest silence minus the one interval that is no outage at all
            "outage_ms": round(max(0.0, self.max_gap - interval) * 1000, 1),
            "gap_ended_wall": (
                round(time.time() - (time.monotonic() - self.gap_at), 3) if self.gap_at else None
            ),
        }


def _stop(deadline: float, until_file: str | None) -> bool:
    return time.monotonic() >= deadline or (until_file is not None and os.path.exists(until_file))


def ping(dest: str, interval: float, duration: float, until_file: str | None) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    tally = Tally()
    print("ready", file=sys.stderr, flush=True)
    deadline = time.monotonic() + duration
    next_send = time.monotonic()
    seq = 0
    while not _stop(deadline, until_file):
        now = time.monotonic()
        if now >= next_send:
            with contextlib.suppress(OSError):  # no route for a moment: counts as lost
                sock.sendto(echo_request(ident, seq & 0xFFFF, struct.pack("!d", now)), (dest, 0))
            tally.sent += 1
            seq += 1
            next_send += interval
        ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if ready:
            data = sock.recv(2048)
            hlen = (data[0] & 0x0F) * 4
            icmp = data[hlen:]
            if len(icmp) >= 8 and icmp[0] == ICMP_ECHO_REPLY:
                _, _, _, rid, rseq = struct.unpack_from("!BBHHH", icmp)
                if rid == ident:
                    tally.arrived(rseq, time.monotonic())
    # replies still in flight
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        ready, _, _ = select.select([sock], [], [], 0.05)
        if ready:
            data = sock.recv(2048)
            icmp = data[(data[0] & 0x0F) * 4 :]
            if len(icmp) >= 8 and icmp[0] == ICMP_ECHO_REPLY:
                _, _, _, rid, rseq = struct.unpack_from("!BBHHH", icmp)
                if rid == ident:
                    tally.arrived(rseq, time.monotonic())
    return tally.report("icmp", interval)


def udp_send(dest: str, port: int, interval: float, duration: float, until: str | None) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    print("ready", file=sys.stderr, flush=True)
    deadline = time.monotonic() + duration
    seq = 0
    while not _stop(deadline, until):
        with contextlib.suppress(OSError):
            sock.sendto(struct.pack("!I", seq) + b"mobileip-lab", (dest, port))
        seq += 1
        time.sleep(interval)
    sock.sendto(struct.pack("!I", 0xFFFFFFFF) + struct.pack("!I", seq), (dest, port))
    return seq


def udp_recv(port: int, interval: float, duration: float, until: str | None) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    tally = Tally()
    print("ready", file=sys.stderr, flush=True)
    deadline = time.monotonic() + duration
    while not _stop(deadline, until):
        ready, _, _ = select.select([sock], [], [], 0.05)
        if not ready:
            continue
        data = sock.recv(2048)
        if len(data) < 4:
            continue
        (seq,) = struct.unpack_from("!I", data)
        if seq == 0xFFFFFFFF and len(data) >= 8:
            tally.sent = struct.unpack_from("!I", data, 4)[0]
            break
        tally.arrived(seq, time.monotonic())
    if tally.sent == 0 and tally.seen:
        tally.sent = max(tally.seen) + 1  # the end marker was lost: count up to the last seen
    return tally.report("udp", interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobileip.tools.traffic")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("ping", "udp-send", "udp-recv"):
        p = sub.add_parser(name)
        if name != "udp-recv":
            p.add_argument("dest")
        if name != "ping":
            p.add_argument("port", type=int)
        p.add_argument("--interval", type=float, default=0.01)
        p.add_argument("--duration", type=float, default=10.0)
        p.add_argument("--until-file")
    args = parser.parse_args(argv)
    if args.cmd == "ping":
        result = ping(args.dest, args.interval, args.duration, args.until_file)
    elif args.cmd == "udp-send":
        result = {
            "kind": "udp-send",
            "sent": udp_send(args.dest, args.port, args.interval, args.duration, args.until_file),
        }
    else:
        result = udp_recv(args.port, args.interval, args.duration, args.until_file)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
