"""A real PostgreSQL server for the shared-storage tests: the fixture ``postgres`` starts one on a
free loopback port for the test module that imports it, and stops it at the module's end."""
import glob
import os
import shutil
import socket
import subprocess

import pytest


def _pg_bin():
    for cand in [os.path.dirname(os.path.realpath(shutil.which("initdb") or ""))] + sorted(glob.glob("/usr/lib/postgresql/*/bin"))[::-1]:
        if cand and os.path.isfile(os.path.join(cand, "initdb")) and os.path.isfile(os.path.join(cand, "pg_ctl")):
            return cand
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL server on a free loopback port for this module; stopped at the end."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        pytest.fail("the PostgreSQL storage needs a driver: pip install 'psycopg[binary]' (bash scripts/setup.sh does)")
    bindir = _pg_bin()
    if bindir is None:
        pytest.fail("no PostgreSQL server programs (initdb, pg_ctl) found: install them with "
                    "`apt-get install postgresql` (Debian) or put initdb on PATH; the PostgreSQL storage tests need a server")
    import tempfile

    # not under pytest's tmp folder: that one is private to the test user, and the server may run as postgres
    base = tempfile.mkdtemp(prefix="infomorph-pg-")
    data, sock = os.path.join(base, "data"), os.path.join(base, "sock")
    os.mkdir(sock)
    prefix = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        prefix = ["runuser", "-u", "postgres", "--"]
        for d in (base, sock):
            shutil.chown(d, "postgres")
    port = _free_port()
    def run(*cmd):
        r = subprocess.run(prefix + list(cmd), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{' '.join(cmd)} failed: {r.stderr.strip() or r.stdout.strip()}"

    run(os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(os.path.join(bindir, "pg_ctl"), "-D", data, "-w", "-l", os.path.join(base, "server.log"), "-o",
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=50", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(os.path.join(bindir, "pg_ctl"), "-D", data, "-w", "-m", "fast", "stop")
        shutil.rmtree(base, ignore_errors=True)
