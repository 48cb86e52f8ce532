"""A throwaway PostgreSQL server for benchmarks: initdb into a temp dir, start on a unix socket, drop it after.

The same recipe as tests/conftest.py's `postgres_server` fixture (needs the server binaries: initdb, pg_ctl;
as root it runs the server as the `postgres` user). fsync stays ON here, unlike the tests: a benchmark should
pay what a real server pays.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise SystemExit("PostgreSQL server binaries (initdb) are not installed: apt-get install postgresql")
    return Path(initdb).resolve().parent


@contextmanager
def throwaway_postgres(dbname: str = "bench") -> Iterator[str]:
    """Yield the SQLAlchemy URL of an empty database on a fresh server; stop and delete it afterwards."""
    bindir = _bindir()
    base = Path(tempfile.mkdtemp(prefix="itam-bench-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    run_as: list[str] = []
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        user, run_as = "postgres", ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", user, "-A", "trust"], check=True,
                   capture_output=True)
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "pg.log"), "-w", "-o",
                    f"-k {sock} -p {port} -c listen_addresses='' -c shared_buffers=256MB", "start"],
                   check=True, capture_output=True)
    try:
        import psycopg

        with psycopg.connect(dbname="postgres", host=str(sock), port=port, user=user, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {dbname}")
        yield f"postgresql+psycopg://{user}@/{dbname}?host={sock}&port={port}"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
