"""Process helpers shared by the benchmarks that start servers (free ports: ``testkit.ports``).

Every benchmark kills what it started in a ``finally``. ``die_with_parent`` covers the one case a
``finally`` cannot: the benchmark itself being SIGKILLed (or a CI timeout), which would otherwise
leave nats-server or pysyncobj nodes running on the shared machine.
"""

from __future__ import annotations

import shutil

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
