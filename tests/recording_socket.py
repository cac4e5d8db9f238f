"""A stand-in for the AF_PACKET socket that gratuitous ARPs leave through: records what is sent
and whether it was closed (net/vmac.announce, the mobile node's gratuitous ARPs). Patch it over
``socket.socket`` and reset :attr:`RecordingSocket.made` first."""

from __future__ import annotations


class RecordingSocket:
    made: list[RecordingSocket] = []

    def __init__(self, family: int, kind: int, proto: int = 0) -> None:
        self.args = (family, kind, proto)
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.blocking = True
        self.closed = False
        RecordingSocket.made.append(self)

    def setblocking(self, flag: bool) -> None:
        self.blocking = flag

    def sendto(self, frame: bytes, address: tuple[str, int]) -> int:
        assert not self.closed
        self.sent.append((frame, address))
        return len(frame)

    def close(self) -> None:
        self.closed = True
