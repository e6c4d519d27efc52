"""One node process of a :class:`testkit.cluster.Cluster`: id, addresses, data directory, log
file and process handle. Not thread-safe (owned by its cluster)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class NodeProcess:
    """One node of the test cluster."""

    id: str
    host: str
    api_port: int
    raft_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    down_on_purpose: bool = False  # killed or stopped by the test (not a crash)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
