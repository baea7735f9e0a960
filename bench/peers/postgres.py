"""A throwaway PostgreSQL cluster from Debian's packages, for the peer: made in a folder of its own, listening on
a Unix socket only, durable commits, removed whole by stop()."""
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.processes import children_of

# Durable as a bank needs it: every commit flushed before it is answered.
SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "listen_addresses": "",
            "max_connections": "200", "shared_buffers": "128MB", "log_min_messages": "warning"}


class Postgres:
    def __init__(self, port=5432):
        self.port = port
        # Not under the benchmark's own folder: PostgreSQL runs as its own user, who may not enter that one.
        self.folder = Path(tempfile.mkdtemp(prefix="bank-bench-postgres-"))
        self.data, self.socket = self.folder / "data", self.folder
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))[-1])

    @property
    def dsn(self):
        return f"host={self.socket} port={self.port} user=bank dbname=postgres"

    def start(self):
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "bank", "-A", "trust", "--no-instructions")
        options = " ".join(f"-c {name}={value}" for name, value in SETTINGS.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "postgres.log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.socket} {options}", "start")
        return self

    def sql(self, statement):
        self._run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket), "-p", str(self.port),
                  "-U", "bank", "-d", "postgres", "-c", statement)

    def pids(self):
        """The postmaster and every backend and helper it started."""
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [postmaster, *children_of(postmaster)]

    def stop(self):
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program, *args):
        subprocess.run([*self._as_postgres, str(self._bin / program), *args], check=True, capture_output=True,
                       timeout=120)
