"""Free TCP ports for servers a test or benchmark is about to start. Thread-safe.

A port is "free" when binding it (port 0: the OS picks) succeeded a moment ago; the sockets are
closed before the servers bind, so another process could take one in between. Tests and
benchmarks accept that small race.
"""

from __future__ import annotations

import socket


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports on ``host`` (held together while chosen, so they
    differ)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """One free TCP port on ``host``."""
    return free_ports(1, host)[0]
