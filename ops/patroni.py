"""PostgreSQL under Patroni for the statement store: one member's configuration, folder and command.

Each member is a Patroni process that runs its own PostgreSQL; the members elect a primary through the bank's
own etcd cluster (keys under /{namespace}/{scope}/) and replicate synchronously, so a failover loses nothing
acknowledged. Every connection is TLS with certificates from the bank's CA (make certs): PostgreSQL takes a client
certificate as the user its common name names. PostgreSQL refuses to run as root: a member started by root runs as
the "postgres" user (setpriv), from a folder and a copy of the certificates that user owns, with Patroni from a
virtualenv of Debian's Python that user can read (PATRONI_VENV; `make statements-packages` makes it).

  python -m ops.patroni --name pg1 --folder var/pg/pg1 --pg-port 15441 --rest-port 18101 --etcd URL,... \
      --tls var/tls --namespace bank-pg    prepares the member's folder and runs it (Procfile.cluster)
"""
import argparse
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from data.statements.postgres import DATABASE, USER

PATRONI_VERSION = "4.1.5"
PATRONI_VENV = os.environ.get("PATRONI_VENV", f"/opt/bank-patroni-{PATRONI_VERSION}")
POSTGRES_BIN = os.environ.get("POSTGRES_BIN", "/usr/lib/postgresql/15/bin")
SCOPE = "statements"            # the Patroni cluster's name
LEADER_TTL_SECONDS = 20         # Patroni's leader lease: how long a primary that died unseen is waited for
LOOP_WAIT_SECONDS = 2
RETRY_TIMEOUT_SECONDS = 5       # loop_wait + 2 x retry_timeout <= ttl, as Patroni requires
STOP_GRACE_SECONDS = 4          # a member told to stop has this long to stop cleanly, then it is killed
_CERTS = ("ca", "postgres", "pg-postgres", "pg-replicator", "pg-rewinder")


@dataclass(frozen=True)
class Member:
    name: str
    folder: Path                # the member's own: its configuration, certificates, data and socket
    address: str
    pg_port: int
    rest_port: int


def runs_as():
    """The account PostgreSQL runs under: postgres when started by root, else the caller itself."""
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


def prepare(member, etcd_urls, tls_dir, namespace, rest_password):
    """Write the member's folder: its certificates (owned by the account it runs as, keys 0600) and its
    configuration; the data directory is made by Patroni on first start (or kept, to restart on it)."""
    account = runs_as()
    member.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    tls = member.folder / "tls"
    tls.mkdir(mode=0o700, exist_ok=True)
    for name in _CERTS:
        for suffix, mode in ((".pem", 0o644), ("-key.pem", 0o600)):
            if name == "ca" and suffix == "-key.pem":
                continue            # the CA's key signs; no member needs it
            target = tls / f"{name}{suffix}"
            shutil.copyfile(Path(tls_dir) / f"{name}{suffix}", target)
            os.chmod(target, mode)
    script = member.folder / "post_bootstrap.sh"
    script.write_text("#!/bin/sh\nset -e\n"
                      f'{POSTGRES_BIN}/psql "$1" -v ON_ERROR_STOP=1 -c "CREATE ROLE {USER} LOGIN" '
                      f'-c "CREATE DATABASE {DATABASE} OWNER {USER}"\n')
    os.chmod(script, 0o700)
    config = member.folder / "patroni.json"
    config.write_text(json.dumps(_configuration(member, etcd_urls, tls, namespace, rest_password, script), indent=1))
    os.chmod(config, 0o600)
    for path in [member.folder, *member.folder.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid)
    return config


def command(member):
    """The member's command line: Patroni on its configuration, as the account it runs as; to be run in the
    member's folder (its account may reach no other)."""
    patroni = [f"{PATRONI_VENV}/bin/patroni", str(member.folder / "patroni.json")]
    if os.geteuid() != 0:
        return patroni
    account = runs_as()
    # setpriv execs (a runuser shell would be killed mid-shutdown, leaving PostgreSQL behind); Patroni is told to
    # stop (and stops its PostgreSQL) if whatever started it dies; a clean environment.
    return ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups",
            "--pdeathsig", "TERM", "env", "-i", f"HOME={account.pw_dir}", "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
            *patroni]


def supervise(member):
    """Run the member until told to stop, then stop it: SIGTERM to Patroni (which stops its PostgreSQL), and
    after STOP_GRACE_SECONDS both killed, as a crash would (the standby has every commit). Within the few
    seconds a process manager gives a process group before it kills it (honcho's five); Patroni runs in a session
    of its own, so that it is this process, not that kill, which decides how it ends."""
    patroni = subprocess.Popen(command(member), cwd=member.folder, start_new_session=True,
                               preexec_fn=None if os.geteuid() == 0 else _stop_with_parent)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    while patroni.poll() is None and not stopping.wait(0.5):
        pass
    if patroni.poll() is None:
        patroni.terminate()
        try:
            patroni.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            kill(member, patroni)
    return patroni.wait()


def kill_postgres(member):
    """The member's PostgreSQL killed, nothing shut down (its Patroni lives on)."""
    try:
        pid = int((member.folder / "data" / "postmaster.pid").read_text().split()[0])
        # The postmaster runs in a session of its own: its process group goes with it.
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass


def kill(member, patroni):
    """Patroni and its PostgreSQL killed at once, nothing shut down: what a crash of their machine does."""
    kill_postgres(member)
    if patroni is not None and patroni.poll() is None:
        os.killpg(patroni.pid, signal.SIGKILL)
        patroni.wait(10)


def _stop_with_parent():
    """In the child: SIGTERM when its parent dies (setpriv --pdeathsig does it for root's)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG


def _configuration(member, etcd_urls, tls, namespace, rest_password, script):
    ca, server, server_key = str(tls / "ca.pem"), str(tls / "postgres.pem"), str(tls / "postgres-key.pem")

    def user(name):
        return {"username": name, "sslmode": "verify-full", "sslrootcert": ca,
                "sslcert": str(tls / f"pg-{name}.pem"), "sslkey": str(tls / f"pg-{name}-key.pem")}

    https = all(url.startswith("https://") for url in etcd_urls)
    etcd = {"hosts": [url.split("://", 1)[1] for url in etcd_urls], "protocol": "https" if https else "http"}
    if https:
        etcd |= {"cacert": ca, "cert": server, "key": server_key}
    endpoint = f"{member.address}:{member.rest_port}"
    return {
        "scope": SCOPE,
        "namespace": f"/{namespace}/",
        "name": member.name,
        "restapi": {"listen": endpoint, "connect_address": endpoint, "certfile": server, "keyfile": server_key,
                    "cafile": ca, "authentication": {"username": "bank", "password": rest_password}},
        "ctl": {"cacert": ca, "certfile": server, "keyfile": server_key},
        "etcd3": etcd,
        "bootstrap": {
            "dcs": {"ttl": LEADER_TTL_SECONDS, "loop_wait": LOOP_WAIT_SECONDS,
                    "retry_timeout": RETRY_TIMEOUT_SECONDS,
                    # A commit is acknowledged once the synchronous standby has it too: a failover loses none.
                    "synchronous_mode": True,
                    # A primary whose PostgreSQL died is failed over at once, not restarted in place: the standby
                    # has every commit, and the bank waits seconds, not the leader's ttl.
                    "primary_start_timeout": 0,
                    "postgresql": {"use_pg_rewind": True, "parameters": {"max_connections": 50}}},
            "initdb": [{"encoding": "UTF8"}, "data-checksums"],
            "post_bootstrap": str(script),
        },
        "postgresql": {
            "listen": f"{member.address}:{member.pg_port}",
            "connect_address": f"{member.address}:{member.pg_port}",
            "data_dir": str(member.folder / "data"),
            "bin_dir": POSTGRES_BIN,
            "pgpass": str(member.folder / "pgpass"),
            "use_unix_socket": True,
            # A new standby copies the primary at once, not after a spread checkpoint (minutes).
            "basebackup": [{"checkpoint": "fast"}],
            "authentication": {"superuser": user("postgres"), "replication": user("replicator"),
                               "rewind": user("rewinder")},
            "parameters": {"unix_socket_directories": str(member.folder), "ssl": "on", "ssl_cert_file": server,
                           "ssl_key_file": server_key, "ssl_ca_file": ca, "shared_buffers": "32MB"},
            "pg_hba": ["local all postgres peer",
                       "hostssl replication replicator all cert",
                       "hostssl all all all cert"],
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ops.patroni", description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--rest-port", type=int, required=True)
    parser.add_argument("--etcd", required=True, help="the etcd members' client URLs, comma separated")
    parser.add_argument("--tls", type=Path, default=Path("var/tls"))
    parser.add_argument("--namespace", default="bank-pg")
    args = parser.parse_args(argv)
    member = Member(args.name, args.folder.resolve(), args.address, args.pg_port, args.rest_port)
    prepare(member, args.etcd.split(","), args.tls, args.namespace, secrets.token_urlsafe(16))
    return supervise(member)


if __name__ == "__main__":
    sys.exit(main())
