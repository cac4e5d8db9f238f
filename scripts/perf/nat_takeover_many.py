"""Takeover with many NAT-ed mobile nodes behind one NAT (RFC 3519; issue 16 item 1), inside
User-Mode Linux, by hand::

    python -m mobileip.tools.uml --timeout 3000 -- \\
        .venv/bin/python scripts/perf/nat_takeover_many.py --nodes 100 --runs 2

:class:`mobileip.tools.natlab.NatLab`'s namespaces and NAT; instead of ``mobileip mobilenode``,
``python -m mobileip.tools.simnodes natnodes`` in the private namespace: ``--nodes`` mobile nodes,
one UDP socket each on the private address (so the NAT maps each to its own public port), each
registering its own home address (10.1.0.100 + i) with D and a UDP Tunnel Request, then sending
keepalives every second (the NAT forgets idle UDP after 4 s) and sinking the tunnel data. Checked
before the kill: both members hold ``--nodes`` UDP-tunnelled homes (``GET /api/v1/nat``'s
``udp_homes``) on as many distinct NAT ports. The correspondent sends a UDP stream to every home
address (``simnodes send``: each node every ``--interval`` s, spread evenly); every node must be
reached. ha1's link is cut and ha1 SIGKILLed; ha2 takes over. Per node: outage = the longest
silence around the kill less one interval, recovered = first packet after the kill (the sink's
:func:`~mobileip.tools.simnodes.node_outage`); reported: median and worst over the nodes, who
did not recover, per run. Timings inside UML are relative (one ptrace-trapped CPU for all).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from ipaddress import IPv4Address
from typing import Any

from mobileip.tools import simnodes
from mobileip.tools.lab import _ip
from mobileip.tools.natlab import CN, MN_PRIVATE, VIRTUAL, NatLab

FIRST_HOME = "10.1.0.100"
KEY = "00112233445566778899aabbccddeeff"  # the lab's SA (spi 256) for 10.1.0.0/24


def one_run(nodes: int, interval: float, after: float) -> dict[str, Any]:
    lab = NatLab(nat=True)
    row: dict[str, Any] = {"nodes": nodes, "interval_s": interval}
    try:
        lab.setup()
        lab.start_home_agents()
        homes = [str(IPv4Address(FIRST_HOME) + i) for i in range(nodes)]
        homes_file = lab.work / "homes.txt"
        homes_file.write_text("\n".join(homes) + "\n")
        stop = lab.work / "stop"
        mod = [lab.python, "-m", "mobileip.tools.simnodes"]
        sink = lab.spawn(
            "mn",
            [*mod, "natnodes", "-n", str(nodes), "--private", MN_PRIVATE, "--ha", VIRTUAL,
             "--spi", "256", "--key", KEY, "--first-home", FIRST_HOME, "--peer", CN,
             "--interval", str(interval), "--until-file", str(stop),
             "--mark-file", str(lab.mark_file)],
            "natnodes",
        )  # fmt: skip
        registered = json.loads(sink.wait_for(r'^\{"registered"', 300))
        row["registered"] = registered["registered"]
        row["register_wall_s"] = registered["wall_s"]

        def held(node: str) -> tuple[int, int]:
            status = lab.nat_status(node)
            ports = {m for ms in status["tunnels"].values() for m in ms}
            return int(status["udp_homes"]), len(ports)

        lab._wait(
            lambda: held("ha1") == (nodes, nodes) and held("ha2") == (nodes, nodes),
            60,
            f"{nodes} NAT-ed homes on {nodes} distinct mappings on both members",
        )
        row["mappings_before"] = {"ha1": held("ha1"), "ha2": held("ha2")}
        sender = lab.spawn(
            "cn",
            [*mod, "send", "--homes-file", str(homes_file), "--interval", str(interval),
             "--until-file", str(stop)],
            "send",
        )  # fmt: skip
        sender.wait_for("ready", 30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            last = [json.loads(t) for _, t in sink.lines if t.startswith('{"t"')]
            if last and last[-1]["reached"] == nodes:
                break
            time.sleep(0.25)
        else:
            raise RuntimeError(f"not every node reached before the kill: {last[-1:]}")
        time.sleep(2.0)
        _ip("-n", lab.ns("hub"), "link", "set", "p-ha1-0", "down")
        killed = lab.kill("ha1")
        if lab.wait_new_active(["ha2"], timeout=20) != "ha2":
            raise RuntimeError("ha2 did not take over")
        row["ha2_active_after_s"] = round(time.monotonic() - killed, 3)
        time.sleep(max(0.0, killed + after - time.monotonic()))
        stop.touch()
        final = json.loads(sink.wait_for(r'^\{"final"', 120))
        row.update(simnodes.summarize(final["per_node"]))
        row["ha2_counters"] = lab.nat_status("ha2")["counters"]
    finally:
        lab.teardown()
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.1, help="s between packets per node")
    p.add_argument("--after", type=float, default=8.0, help="s of traffic after the kill")
    args = p.parse_args()
    if not 1 <= args.nodes <= 150:
        p.error("--nodes: 1 to 150 (home addresses 10.1.0.100 and up, in the lab's /24)")
    for _ in range(args.runs):
        print(json.dumps(one_run(args.nodes, args.interval, args.after)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
