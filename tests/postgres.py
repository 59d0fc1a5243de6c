"""A private PostgreSQL server (Debian's `postgresql` package) for tests: a fresh cluster in a
temporary directory on a free port of 127.0.0.1, stopped and removed afterwards.

PostgreSQL refuses to run as root; as root the cluster runs as the `postgres` system user.
`.ci/run` installs the package and sets REQUIRE_POSTGRES=1, so CI fails rather than skips.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.local import free_port


def _bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def require() -> Path:
    directory = _bin()
    if directory is None:
        message = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    return directory


@contextmanager
def postgres() -> Iterator[str]:
    """Start a cluster in a new temporary directory; yields its DSN. (Not under pytest's
    tmp_path: its parents are private to root, and the server may run as `postgres`.)"""
    binaries = require()
    work = Path(tempfile.mkdtemp(prefix="alignserve-postgres-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(work, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = work / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*prefix, *command], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr}")

    run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "alignserve",
        "-E", "UTF8", "--no-sync")
    run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(work / "server.log"), "-w",
        "-o", f"-p {port} -h 127.0.0.1 -k {work}", "start")
    try:
        yield f"postgresql://alignserve@127.0.0.1:{port}/postgres"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(work, ignore_errors=True)
