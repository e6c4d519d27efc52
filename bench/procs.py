"""Process and port helpers shared by the benchmarks that start servers.

Every benchmark kills what it started in a ``finally``. ``die_with_parent`` covers the one case a
``finally`` cannot: the benchmark itself being SIGKILLed (or a CI timeout), which would otherwise
leave nats-server or pysyncobj nodes running on the shared machine.
"""

from __future__ import annotations

import shutil
import socket

_SETPRIV = shutil.which("setpriv")


def die_with_parent(cmd: list[str]) -> list[str]:
    """``cmd`` wrapped so the kernel SIGKILLs it when the benchmark process dies.

    Uses util-linux ``setpriv --pdeathsig KILL`` (Debian has it) instead of a ``preexec_fn``,
    which is unsafe once the parent has threads (asyncio's executor does). Without setpriv the
    command runs unwrapped and the ``finally`` blocks remain the only cleanup.
    """
    if _SETPRIV is None:
        return cmd
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *cmd]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports from binding port 0. All n sockets are held open together
    (so the OS cannot hand out one port twice), then released for the servers to bind."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
