"""The fast path's programs load on kernels that check alignment strictly.

A kernel without efficient unaligned access (Debian's User-Mode Linux 6.1; some arm and mips
builds) runs the verifier with strict alignment: a 4-byte packet store at the frame's start,
which it counts as offset 2 (``NET_IP_ALIGN``), is refused with "misaligned packet access". Up
to 2026-12-07 the MAC path's and the route cache's MAC copies were, so the fast path did not
load there (``auto`` fell back to the kernel's tunnels; ``on`` failed the start). Here every
option combination of both programs is loaded into this machine's kernel with
``BPF_F_STRICT_ALIGNMENT``, which applies the same checks on any architecture.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from mobileip.dataplane import bpf_asm as ba
from mobileip.dataplane import nexthops as nh
from mobileip.dataplane.bpf import ROUTE, ROUTE_KEY, VALUE, forward_program, reverse_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for bpf()")


@pytest.fixture
def maps() -> Iterator[dict[str, int]]:
    fds = {
        "homes": ba.map_create(ba.MAP_HASH, 4, VALUE.size, 16),
        "nexthops": ba.map_create(ba.MAP_HASH, 4, nh.VALUE.size, 16),
        "allowed": ba.map_create(ba.MAP_HASH, 8, 8, 16),
        "drops": ba.map_create(ba.MAP_ARRAY, 4, 8, 1),
        "live": ba.map_create(ba.MAP_ARRAY, 4, 4, 1),
        "routes": ba.map_create(ba.MAP_LRU_HASH, ROUTE_KEY.size, ROUTE.size, 16),
        "generation": ba.map_create(ba.MAP_ARRAY, 4, 4, 1),
    }
    try:
        yield fds
    finally:
        for fd in fds.values():
            ba.close(fd)


def _programs(fds: dict[str, int]) -> Iterator[tuple[str, bytes]]:
    for hops, live in itertools.product((False, True), repeat=2):
        code = forward_program(
            fds["homes"], fds["nexthops"] if hops else -1, fds["live"] if live else -1
        )
        yield f"forward hops={hops} live={live}", code
    source = IPv4Address("192.0.2.1")
    for live, redirect, cache in itertools.product((False, True), repeat=3):
        if cache and not redirect:
            continue  # the cache is the redirect's
        code = reverse_program(
            fds["allowed"],
            fds["drops"],
            source,
            fds["live"] if live else -1,
            redirect=redirect,
            routes_fd=fds["routes"] if cache else -1,
            generation_fd=fds["generation"] if cache else -1,
        )
        yield f"reverse live={live} redirect={redirect} cache={cache}", code


def test_every_program_loads_with_strict_alignment(maps: dict[str, int]) -> None:
    refused = []
    loaded = 0
    for name, code in _programs(maps):
        try:
            fd = ba.prog_load(code, "mip_align", flags=ba.PROG_F_STRICT_ALIGNMENT)
        except OSError as exc:
            refused.append(f"{name}: {str(exc)[-300:]}")
        else:
            ba.close(fd)
            loaded += 1
    assert not refused, "\n".join(refused)
    assert loaded == 10
