"""A throwaway PostgreSQL cluster (``initdb`` in a temp dir, 127.0.0.1, a free port, trust auth), run
as the ``postgres`` user when we are root; stopped and removed on exit of the ``with`` block, also on
errors. Used by the PostgreSQL tests and by ``benchmarks/keyhost_load.py``. Without PostgreSQL it
fails loudly (CI installs Debian's ``postgresql``)."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_names = itertools.count()


def pg_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    cands = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not cands:
        raise RuntimeError("PostgreSQL is not installed (no initdb): apt-get install postgresql")
    return cands[-1].parent


class Cluster:
    def __init__(self, port: int) -> None:
        self.port = port

    def new_database(self) -> str:
        """A new empty database; its connection string."""
        name = f"kh_{os.getpid()}_{next(_names)}"
        subprocess.run(
            [pg_bin() / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
            check=True,
            capture_output=True,
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@contextmanager
def postgres_cluster(*, durable: bool = False) -> Iterator[Cluster]:
    """Start a cluster; ``durable`` keeps fsync and synchronous commit on (for benchmarks)."""
    bin_dir = pg_bin()
    root = Path(tempfile.mkdtemp(prefix="ghostpii-pg-"))
    pre = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if pre:
        shutil.chown(root, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    fast = "" if durable else " -c fsync=off -c synchronous_commit=off"
    try:
        subprocess.run(
            [*pre, bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"],
            check=True,
            capture_output=True,
        )
        opts = f"-h 127.0.0.1 -p {port} -k {root} -c max_connections=100{fast}"
        subprocess.run(
            [*pre, bin_dir / "pg_ctl", "-D", data, "-o", opts, "-l", root / "log", "-w", "start"],
            check=True,
            capture_output=True,
        )
        yield Cluster(port)
    finally:
        subprocess.run([*pre, bin_dir / "pg_ctl", "-D", data, "stop", "-m", "fast"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
