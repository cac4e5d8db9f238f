"""``mobileip``: the command line.

    mobileip homeagent --config FILE [--log-format text|json]
    mobileip show bindings [--control HOST:PORT] [--json]
    mobileip show stats [--control HOST:PORT]
    mobileip show redundancy [--control HOST:PORT] [--json]
    mobileip show vrrp [--control HOST:PORT] [--json]
    mobileip show groups|dynamic-ha [--control HOST:PORT] [--json]   (any show: --group NAME)
    mobileip show pools|nat|revocation [--control HOST:PORT] [--json]
    mobileip role active|standby [--control HOST:PORT] [--json]
    mobileip register --ha HOST[:PORT] --home-address A --care-of-address C --spi N --key HEX ...
    mobileip register --ha HOST[:PORT] --nai NAI --care-of-address C --spi N --key HEX ...
    mobileip config check FILE
    mobileip clear binding HOME [--control HOST:PORT] [--json]
    mobileip demo

Exit status: 0 success; 1 registration denied or a runtime failure; 2 bad usage or bad config;
3 no valid reply from the home agent; 4 the control API could not be reached.

Why one file of ~570 lines: it is the parser (one table of every command and flag, so the help
and completion come from one place) and thin handlers, each a few lines calling the control API
or a tool's ``main``; a split would scatter that table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from mobileip.agents.client import (
    ControlError,
    MobileNode,
    RegistrationClient,
    RegistrationResult,
    fetch_json,
)
from mobileip.config import ConfigError, load_config, to_toml
from mobileip.config.build import address_pools
from mobileip.core.security import ALGORITHMS, SecurityAssociation
from mobileip.log import FORMATS, LEVELS
from mobileip.wire.registration import UDP_PORT, Flags

EXIT_DENIED = 1
EXIT_USAGE = 2
EXIT_NO_REPLY = 3
EXIT_CONTROL = 4

_CISCO_FLAGS = "SBDMGrTx"
_ANY = IPv4Address("0.0.0.0")


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    try:
        IPv4Address(host)
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST[:PORT]") from None
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"port {number} out of range")
    return host, number


def _ipv4(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def _hex(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("key must be hex") from None
    if not value:
        raise argparse.ArgumentTypeError("key must not be empty")
    return value


def _spi(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 256 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError("SPI must be 256 to 4294967295 (0-255 are reserved)")
    return value


def _nai(text: str) -> bytes:
    """RFC 2794's NAI: ASCII, no spaces, at most 255 bytes (one extension's length byte)."""
    if not text or not text.isascii() or " " in text or len(text) > 255:
        raise argparse.ArgumentTypeError(f"{text!r} is not an NAI (ASCII, no spaces, 1-255 bytes)")
    return text.encode()


def _lifetime(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError("lifetime must be 0 to 65535 seconds")
    return value


def _control_options(p: argparse.ArgumentParser) -> None:
    """--control, --token and --json: every command that talks to a daemon's control API."""
    p.add_argument(
        "--control",
        type=lambda s: _host_port(s, 8434),
        default=("127.0.0.1", 8434),
        help="control API HOST:PORT (default 127.0.0.1:8434)",
    )
    p.add_argument("--token", default=os.environ.get("MOBILEIP_TOKEN"), help="bearer token")
    p.add_argument("--json", action="store_true", help="print JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobileip", description="Mobile IPv4 Home Agent")
    sub = parser.add_subparsers(dest="command", required=True)

    ha = sub.add_parser("homeagent", help="run the Home Agent daemon")
    ha.add_argument("--config", required=True, help="TOML configuration file")
    ha.add_argument("--log-format", choices=FORMATS, default="text")
    ha.add_argument("--log-level", choices=tuple(LEVELS), default="info")

    show = sub.add_parser("show", help="show the daemon's state (control API)")
    show_sub = show.add_subparsers(dest="what", required=True)
    for name, text in (
        ("bindings", "the mobility binding table"),
        ("stats", "counters"),
        ("redundancy", "the redundancy group: sync state, members, counters"),
        ("vrrp", "the role: driver, VRRP state, priority, transitions"),
        ("groups", "every group of a daemon with [[group]]: role, bindings, load"),
        ("dynamic-ha", "RFC 4433 dynamic HA assignment: load, peers, counters"),
        ("pools", "dynamic home address pools: size, in use, retired, counters"),
        ("nat", "RFC 3519 NAT traversal: UDP-tunnelled homes and their NAT mappings"),
        ("revocation", "RFC 3543 registration revocation: pending revocations, counters"),
    ):
        p = show_sub.add_parser(name, help=text)
        p.add_argument("--group", help="one group of a daemon with [[group]] (by name)")
        _control_options(p)

    clear = sub.add_parser("clear", help="administrative actions (control API)")
    clear_sub = clear.add_subparsers(dest="what", required=True)
    cb = clear_sub.add_parser(
        "binding", help="deregister every binding of a home address, group-wide"
    )
    cb.add_argument("home", type=_ipv4, metavar="HOME")
    _control_options(cb)

    role = sub.add_parser("role", help="switch the static role driver (active or standby)")
    role.add_argument("role", choices=("active", "standby"))
    _control_options(role)

    reg = sub.add_parser("register", help="register a mobile node (one request, one reply)")
    reg.add_argument("--ha", required=True, type=lambda s: _host_port(s, UDP_PORT))
    reg.add_argument(
        "--home-address", type=_ipv4, help="required without --nai; with it, default 0.0.0.0"
    )
    reg.add_argument(
        "--nai",
        type=_nai,
        help="RFC 2794 NAI extension; with home address 0.0.0.0 the home agent assigns one",
    )
    reg.add_argument("--care-of-address", required=True, type=_ipv4)
    reg.add_argument("--home-agent-address", type=_ipv4, help="Home Agent field (default: --ha)")
    reg.add_argument("--spi", required=True, type=_spi)
    reg.add_argument("--key", required=True, type=_hex)
    reg.add_argument("--algorithm", choices=ALGORITHMS, default="hmac-md5")
    reg.add_argument("--lifetime", type=_lifetime, default=1800)
    reg.add_argument("--deregister", action="store_true", help="lifetime 0")
    reg.add_argument("--all", action="store_true", help="with --deregister: every binding")
    reg.add_argument("--simultaneous", action="store_true", help="set the S flag")
    reg.add_argument("--reverse-tunnel", action="store_true", help="set the T flag")
    reg.add_argument("--replay", choices=("timestamp", "nonce"), default="timestamp")
    reg.add_argument("--timeout", type=float, default=1.0, help="first wait for a reply (s)")
    reg.add_argument("--retries", type=int, default=3, help="retransmissions")
    reg.add_argument("--json", action="store_true")

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="action", required=True)
    check = cfg_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file")

    demo = sub.add_parser("demo", help="a Home Agent and a mobile node, end to end")
    demo.add_argument("--config", help="config to start from (default examples/homeagent.toml)")

    from mobileip.tools import bench as _bench
    from mobileip.tools import loadgen as _loadgen

    for name, text in (
        ("foreignagent", "run a foreign agent (relay, visitor list, advertisements, tunnels)"),
        ("mobilenode", "run a mobile node (agent discovery, registration, renewal, movement)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True, help="TOML configuration file")
        p.add_argument("--log-format", choices=FORMATS, default="text")
        p.add_argument("--log-level", choices=tuple(LEVELS), default="info")
    from mobileip.tools import lab as _lab

    _lab.add_arguments(sub.add_parser("lab", help="the FIG 1A world in namespaces: failover test"))
    lg = sub.add_parser("loadgen", help="load a Home Agent with many authenticated mobile nodes")
    _loadgen.add_arguments(lg)
    bn = sub.add_parser("bench", help="benchmark suite (echo baseline, HA, sync) on this machine")
    _bench.add_arguments(bn)
    comp = sub.add_parser("completion", help="print a shell completion script")
    comp.add_argument("shell", choices=("bash",), help="the shell (bash; zsh reads it too)")
    from mobileip import manual

    manual.install(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "homeagent":
        from mobileip.compose.run import run_homeagent

        return run_homeagent(args.config, args.log_format, args.log_level)
    if args.command == "show":
        return cmd_show(args)
    if args.command == "completion":
        from mobileip.manual import bash_completion

        print(bash_completion(build_parser()), end="")
        return 0
    if args.command == "register":
        return cmd_register(args)
    if args.command == "clear":
        from mobileip.web.admin import cmd_clear_binding

        return cmd_clear_binding(args.control, args.home, args.token, args.json)
    if args.command == "role":
        return cmd_role(args)
    if args.command == "config":
        return cmd_config_check(args.file)
    if args.command == "demo":
        return cmd_demo(args.config)
    if args.command == "foreignagent":
        from mobileip.agents.fa.daemon import run_foreignagent

        return run_foreignagent(args.config, args.log_format, args.log_level)
    if args.command == "mobilenode":
        from mobileip.agents.mn.daemon import run_mobilenode

        return run_mobilenode(args.config, args.log_format, args.log_level)
    if args.command == "lab":
        from mobileip.tools.lab import main as lab_main

        return lab_main(args)
    if args.command == "loadgen":
        from mobileip.tools.loadgen import main as loadgen_main

        return loadgen_main(args)
    if args.command == "bench":
        from mobileip.tools.bench import main as bench_main

        return bench_main(args)
    return EXIT_USAGE  # pragma: no cover - argparse requires a command


# --- show ------------------------------------------------------------------------------------


def _hms(seconds: int) -> str:
    if seconds == 0xFFFF:
        return "infinite"
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _cisco_flags(flags: int) -> str:
    return "".join(
        letter.upper() if flags & (0x80 >> i) else letter.lower()
        for i, letter in enumerate(_CISCO_FLAGS)
    )


def format_bindings(rows: list[dict[str, Any]]) -> str:
    """The table in the shape of Cisco's ``show ip mobile binding``."""
    lines = ["Mobility Binding List:", f"Total {len(rows)}"]
    for row in rows:
        granted = int(row["granted_lifetime"])
        remaining = int(row["remaining_lifetime"])
        lines.append(f"{row['home_address']}:")
        lines.append(f"    Care-of Addr {row['care_of_address']}, Home Agent {row['home_agent']}")
        lines.append(
            f"    Lifetime granted {_hms(granted)} ({granted}), remaining {_hms(remaining)}"
        )
        ident = int(row["identification"])
        lines.append(
            f"    Flags {_cisco_flags(int(row['flags']))}, "
            f"Identification {ident >> 32:08X}.{ident & 0xFFFFFFFF:08X}"
        )
    return "\n".join(lines)


def format_redundancy(data: dict[str, Any]) -> str:
    """Text like Cisco's ``show ip mobile redundancy``."""
    lines = [
        f"Redundancy state {data.get('state')}, node {data.get('node_id')}, "
        f"mode {data.get('mode')}, bindings {data.get('bindings')}",
        "Members:",
    ]
    for m in data.get("members", []):
        contact = m.get("last_contact")
        seen = "never" if contact is None else f"{contact:.1f}s ago"
        lines.append(
            f"  {m.get('address')}:{m.get('port')} node {m.get('node_id') or '-'} "
            f"{'reachable' if m.get('reachable') else 'UNREACHABLE'}, "
            f"{'SYNCED' if m.get('synced') else 'NOT SYNCED'}, last contact {seen}, "
            f"pending {m.get('pending_updates')}"
        )
    lines.append("Counters:")
    for key, value in sorted(data.get("counters", {}).items()):
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def format_pools(data: dict[str, Any]) -> str:
    """``mobileip show pools``: one line per pool, the retired addresses, the counters."""
    lines = [f"{'Pool':<16} {'First':<16} {'Last':<16} {'Addresses':>10} {'In use':>8} {'Used':>6}"]
    for p in data.get("pools", []):
        size, used = int(p.get("size", 0)), int(p.get("in_use", 0))
        share = f"{100 * used / size:.1f}%" if size else "-"
        lines.append(
            f"{p.get('name')!s:<16} {p.get('first')!s:<16} {p.get('last')!s:<16} "
            f"{size:>10} {used:>8} {share:>6}"
        )
    if not data.get("pools"):
        lines.append("(no pool configured)")
    retired = data.get("retired", [])
    lines.append(
        f"Retired {len(retired)} (outside every pool, held until their bindings end)"
        + (": " + " ".join(map(str, retired[:20])) if retired else "")
        + (" ..." if len(retired) > 20 else "")
    )
    denied = data.get("denied", {})
    lines.append(
        f"Assigned {data.get('assigned', 0)}, reassigned {data.get('reassigned', 0)}, denied "
        + (", ".join(f"{k} {v}" for k, v in sorted(denied.items())) or "0")
    )
    return "\n".join(lines)


def format_nat(data: dict[str, Any]) -> str:
    """``mobileip show nat``: the UDP path, its counters, the NAT-ed homes and their mappings."""
    tunnels: dict[str, list[str]] = data.get("tunnels", {})
    lines = [
        f"UDP tunnelling {'attached' if data.get('attached') else 'NOT attached'}"
        f" (source {data.get('source') or '-'}), NAT-ed homes {data.get('udp_homes', 0)}"
        + (f", listed {len(tunnels)}" if len(tunnels) != data.get("udp_homes", 0) else "")
    ]
    if data.get("unsupported"):
        lines.append(f"Unsupported: {data['unsupported']}")
    for home, mappings in sorted(tunnels.items(), key=lambda kv: IPv4Address(kv[0])):
        lines.append(f"  {home:<16} via {' '.join(mappings) or '-'}")
    lines.append("Counters:")
    for key, value in sorted(data.get("counters", {}).items()):
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def format_revocation(data: dict[str, Any]) -> str:
    """``mobileip show revocation``: the summary, each pending revocation, the counters."""
    summary = data.get("summary", {})
    lines = [
        f"Revocation {'active' if data.get('active') else 'standby'}, "
        f"negotiated bindings {data.get('negotiated', 0)}, pending {summary.get('pending', 0)} "
        f"(dormant {summary.get('pending_dormant', 0)}), deferred {summary.get('deferred', 0)}",
        f"Sent {summary.get('sent', 0)}, retransmitted {summary.get('retransmitted', 0)}, "
        f"acked {summary.get('acked', 0)}, gave up {summary.get('gave_up', 0)}, "
        f"resumed on takeover {summary.get('resumed_on_takeover', 0)}",
    ]
    if "ready" in summary:
        lines.append(
            f"Replication ready {summary['ready']}, "
            f"peers unsupported {summary.get('peers_unsupported', 0)}"
        )
    pending = data.get("pending", [])
    if pending:
        lines.append("Pending:")
    for p in pending:
        lines.append(
            f"  {p.get('home_address')} care-of {p.get('care_of_address')} foreign agent "
            f"{p.get('foreign_agent')} id {p.get('revocation_id')} attempts {p.get('attempts')}"
            f" reason {p.get('reason')}" + (" (dormant)" if p.get("dormant") else "")
        )
    return "\n".join(lines)


_FORMATTERS = {"pools": format_pools, "nat": format_nat, "revocation": format_revocation}


def cmd_show(args: argparse.Namespace) -> int:
    path = {
        "bindings": "/api/v1/bindings",
        "stats": "/api/v1/stats",
        "redundancy": "/api/v1/redundancy",
        "vrrp": "/api/v1/vrrp",
        "groups": "/api/v1/groups",
        "dynamic-ha": "/api/v1/dynamic_ha",
        "pools": "/api/v1/pools",
        "nat": "/api/v1/nat",
        "revocation": "/api/v1/revocation",
    }[args.what]
    if args.group and args.what != "groups":
        path = f"/group/{args.group}{path}"
    try:
        data = fetch_json(args.control, path, args.token)
    except ControlError as exc:
        print(f"mobileip: {exc}", file=sys.stderr)
        return EXIT_CONTROL
    if args.json or args.what in ("stats", "dynamic-ha"):
        print(json.dumps(data, indent=2))
    elif args.what == "groups":
        from mobileip.compose.groups import format_groups

        assert isinstance(data, list)
        print(format_groups(data))
    elif args.what == "redundancy":
        assert isinstance(data, dict)
        print(format_redundancy(data))
    elif args.what in _FORMATTERS:
        assert isinstance(data, dict)
        print(_FORMATTERS[args.what](data))
    elif args.what == "vrrp":
        from mobileip.daemon.roles import format_vrrp

        assert isinstance(data, dict)
        print(format_vrrp(data))
    else:
        assert isinstance(data, list)
        print(format_bindings(data))
    return 0


def cmd_role(args: argparse.Namespace) -> int:
    """``mobileip role active|standby``: switch the static driver through the control API."""
    from mobileip.agents.client import post_json
    from mobileip.daemon.roles import format_vrrp

    try:
        data = post_json(args.control, "/api/v1/role", {"role": args.role}, args.token)
    except ControlError as exc:
        print(f"mobileip: {exc}", file=sys.stderr)
        return EXIT_CONTROL
    assert isinstance(data, dict)
    print(json.dumps(data, indent=2) if args.json else format_vrrp(data))
    return 0


# --- register --------------------------------------------------------------------------------


def cmd_register(args: argparse.Namespace) -> int:
    if args.retries < 0 or args.timeout <= 0:
        print("mobileip: --retries must be >= 0 and --timeout > 0", file=sys.stderr)
        return EXIT_USAGE
    home = args.home_address
    if home is None and args.nai is None:
        print("mobileip: --home-address is required (or --nai for a dynamic one)", file=sys.stderr)
        return EXIT_USAGE
    if home is None:
        home = _ANY
    if home == _ANY and args.nai is None:
        print("mobileip: home address 0.0.0.0 needs --nai (RFC 2794)", file=sys.stderr)
        return EXIT_USAGE
    ha_field = args.home_agent_address or IPv4Address(args.ha[0])
    sa = SecurityAssociation(args.spi, args.algorithm, args.key, (IPv4Network(f"{home}/32"),))
    mn = MobileNode(home, args.care_of_address, ha_field, sa, args.replay, args.nai)
    flags = (Flags.S if args.simultaneous else 0) | (Flags.T if args.reverse_tunnel else 0)
    try:
        with RegistrationClient(mn, args.ha, timeout=args.timeout, retries=args.retries) as cl:
            if args.deregister:
                result = cl.deregister(all_bindings=args.all)
            else:
                result = cl.register(args.lifetime, int(flags))
    except OSError as exc:
        print(f"mobileip: cannot send to {args.ha[0]}:{args.ha[1]}: {exc}", file=sys.stderr)
        return EXIT_DENIED
    print_result(result, args.json, dynamic=home == _ANY and not args.deregister)
    if result.code is None:
        return EXIT_NO_REPLY
    return 0 if result.accepted else EXIT_DENIED


def print_result(result: RegistrationResult, as_json: bool, *, dynamic: bool = False) -> None:
    """One line (or JSON); ``dynamic``: the request asked for an address (0.0.0.0 + NAI), so an
    accepted reply's home address is the one the home agent assigned."""
    if as_json:
        print(json.dumps(result.as_dict()))
        return
    if result.code is None:
        print(f"no valid reply after {result.attempts} attempts")
        for why in result.invalid_replies:
            print(f"  ignored: {why}")
        return
    line = f"code {result.code}: {result.meaning}"
    if result.accepted:
        line += f"; lifetime {result.lifetime}"
        if dynamic:
            line += f"; assigned home address {result.home_address}"
    line += f" (home agent {result.home_agent}, {result.attempts} attempt(s))"
    if not result.authenticated:
        line += " [reply not authenticated]"
    print(line)


# --- config check ----------------------------------------------------------------------------


def cmd_config_check(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"mobileip: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    ha = config.homeagent
    extra = []
    if config.redundancy is not None:
        extra.append(f"redundancy {config.redundancy.mode}")
    if config.vrrp is not None:
        extra.append(f"vrrp {config.vrrp.driver}")
    if config.groups:
        extra.append("groups " + " ".join(f"{g.name}={g.address}" for g in config.groups))
    # [[pool]], or each group's [[group.pool]]: the addresses they can hand out (less the Home
    # Agent's own, the virtual address and exclude, as the daemon counts them)
    pools = [p for c in (config, *(g.config for g in config.groups)) for p in address_pools(c)]
    if pools:
        extra.append(
            f"{len(pools)} pool(s) of {sum(p.size for p in pools)} address(es): "
            + " ".join(f"{p.name}={p.size}" for p in pools)
        )
    print(
        f"{path}: ok (home agent {ha.address} on {ha.listen}:{ha.port}, "
        f"{len(config.security_associations)} SA(s), control "
        f"{config.control.host}:{config.control.port}" + "".join(f", {e}" for e in extra) + ")"
    )
    return 0


# --- demo ------------------------------------------------------------------------------------


def _find_example(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    here = Path(__file__).resolve()
    for candidate in (Path.cwd() / "examples", here.parents[2] / "examples"):
        if (candidate / "homeagent.toml").is_file():
            return candidate / "homeagent.toml"
    raise FileNotFoundError("examples/homeagent.toml not found (run from the repository)")


def free_port(host: str, kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_free(host: str, port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def demo_config(data: dict[str, Any]) -> dict[str, Any]:
    """The example config, moved to 127.0.0.1 and free ports unless root can use it as is."""
    ha = data.setdefault("homeagent", {})
    control = data.setdefault("control", {})
    listen = str(ha.get("listen", "0.0.0.0"))
    port = int(ha.get("port", UDP_PORT))
    ctl_host, _, ctl_port = str(control.get("listen", "127.0.0.1:8434")).rpartition(":")
    usable = (
        os.geteuid() == 0
        and _port_free(listen, port, socket.SOCK_DGRAM)
        and _port_free(ctl_host, int(ctl_port), socket.SOCK_STREAM)
    )
    if not usable:
        ha["listen"] = "127.0.0.1"
        ha["port"] = free_port("127.0.0.1", socket.SOCK_DGRAM)
        control["listen"] = f"127.0.0.1:{free_port('127.0.0.1', socket.SOCK_STREAM)}"
    data.pop("redundancy", None)  # the demo runs one Home Agent
    data.pop("vrrp", None)
    return data


def _wait_healthy(control: tuple[str, int], proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Home Agent exited with status {proc.returncode}")
        try:
            fetch_json(control, "/healthz", timeout=0.5)
            return
        except ControlError:
            time.sleep(0.05)
    raise RuntimeError("the Home Agent's control API did not answer")


def cmd_demo(explicit: str | None) -> int:
    try:
        source = _find_example(explicit)
        data = demo_config(tomllib.loads(source.read_text()))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"mobileip demo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    workdir = Path(tempfile.mkdtemp(prefix="mobileip-demo-"))
    config_path = workdir / "homeagent.toml"
    config_path.write_text(to_toml(data))
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"mobileip demo: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    ha = config.homeagent
    ha_host = "127.0.0.1" if ha.listen.is_unspecified else str(ha.listen)
    control = (config.control.host, config.control.port)
    sa_cfg = config.security_associations[0]
    prefix = sa_cfg.home_addresses[0]
    home = prefix.network_address + min(5, max(prefix.num_addresses - 2, 0))
    coa = IPv4Address("192.0.2.10")  # TEST-NET-1: only a field in the request, never a target
    sa = SecurityAssociation(sa_cfg.spi, sa_cfg.algorithm, sa_cfg.key, sa_cfg.home_addresses)
    mn = MobileNode(home, coa, ha.address, sa, ha.replay)

    print(f"== config: {source} -> {config_path}")
    print(
        f"== starting Home Agent {ha.address} on {ha_host}:{ha.port}, control {control[0]}:"
        f"{control[1]}"
    )
    log_path = workdir / "homeagent.log"
    ok = True
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mobileip", "homeagent", "--config", str(config_path)],
            stderr=log,
        )
        try:
            _wait_healthy(control, proc, 15.0)
            with RegistrationClient(mn, (ha_host, ha.port), timeout=0.5, retries=3) as client:
                print(
                    f"\n== mobile node {home} registers from care-of address {coa} "
                    f"(SPI {sa.spi}, {sa.algorithm}, {ha.replay})"
                )
                result = client.register(600)
                print_result(result, False)
                ok &= result.accepted
                print("\n== mobileip show bindings")
                rows = fetch_json(control, "/api/v1/bindings")
                assert isinstance(rows, list)
                print(format_bindings(rows))
                ok &= len(rows) == 1 and rows[0]["home_address"] == str(home)
                print(f"\n== mobile node {home} deregisters")
                result = client.deregister()
                print_result(result, False)
                ok &= result.accepted
            print("\n== mobileip show bindings")
            rows = fetch_json(control, "/api/v1/bindings")
            assert isinstance(rows, list)
            print(format_bindings(rows))
            ok &= rows == []
        except (RuntimeError, ControlError, OSError) as exc:
            print(f"mobileip demo: {exc}", file=sys.stderr)
            ok = False
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    print(f"\n== Home Agent stopped (exit status {proc.returncode}); its log:")
    print(log_path.read_text().rstrip())
    ok &= proc.returncode == 0
    shutil.rmtree(workdir, ignore_errors=True)
    print("\n== demo " + ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1
