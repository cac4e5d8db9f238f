"""VRRPv3 (RFC 5798) for IPv4: the sans-IO state machine; the wire codec is mobileip.wire.vrrp."""

from mobileip.vrrp.machine import (
    BecameBackup,
    BecameInitialize,
    BecameMaster,
    Output,
    PeerClaimedMaster,
    SendAdvert,
    State,
    VrrpConfig,
    VrrpMachine,
    master_down_interval,
    skew_time,
)

__all__ = [
    "BecameBackup",
    "BecameInitialize",
    "BecameMaster",
    "Output",
    "PeerClaimedMaster",
    "SendAdvert",
    "State",
    "VrrpConfig",
    "VrrpMachine",
    "master_down_interval",
    "skew_time",
]
