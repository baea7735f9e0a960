"""make certs: a local certificate authority and one certificate per role, into var/tls/ (or TLS_DIR).

  ca.pem                      the CA every client and server trusts; ca-key.pem signs the others
  edge.pem, edge-key.pem      nginx's edges: the clients' HTTPS and the data tier's mutual TLS
  business-b1.pem ... b3      each business server's client certificate at the data edge
  data.pem, data-key.pem      the data servers' client certificate towards etcd
  etcd-m1.pem ... m3          each etcd member, for its clients and its peers
  statements.pem              the data servers' client certificate towards PostgreSQL (user "bank")
  postgres.pem                PostgreSQL's servers, and Patroni's REST API and its client certificate to etcd
  pg-postgres.pem, pg-replicator.pem, pg-rewinder.pem   Patroni's own users (superuser, streaming, pg_rewind)

Subject names come from TLS_HOSTS (addresses and DNS names, comma separated; default 127.0.0.1,localhost). Keys
are written mode 0600. A file that exists is kept, never silently replaced: remove var/tls/ (or pass --renew) to
make new ones; or bring your own certificates and point the *_TLS_* settings at them instead.
"""
import argparse
import datetime
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dotenv import find_dotenv, load_dotenv

DAYS = 825                  # the longest validity clients accept for a server certificate
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
# name -> (common name, usages); every certificate carries TLS_HOSTS as its subject alternative names.
ROLES = {
    "edge": ("bank edge", (SERVER,)),
    **{f"business-b{i}": (f"b{i}", (CLIENT,)) for i in (1, 2, 3)},
    "data": ("data server", (CLIENT,)),
    **{f"etcd-m{i}": (f"m{i}", (SERVER, CLIENT)) for i in (1, 2, 3)},
    # PostgreSQL takes a client certificate as the user its common name names.
    "statements": ("bank", (CLIENT,)),
    "postgres": ("postgres server", (SERVER, CLIENT)),
    **{f"pg-{user}": (user, (CLIENT,)) for user in ("postgres", "replicator", "rewinder")},
}


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path, data, private=False):
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)         # the key is never readable by others, not even for a moment
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _key_bytes(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _names(hosts):
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _certificate(subject, key, issuer, issuer_key, usages=(), hosts=(), authority=False, days=DAYS, now=None):
    now = now or datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days))
               .add_extension(x509.BasicConstraints(ca=authority, path_length=None), critical=True))
    if authority:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = (builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
                   .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


def issue(folder, name, common_name, usages, hosts, days=DAYS, now=None):
    """Write folder/name.pem and folder/name-key.pem, signed by folder's CA; for tests, any validity."""
    authority = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    authority_key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), None)
    key = _key()
    certificate = _certificate(common_name, key, authority.subject, authority_key, usages, hosts, days=days, now=now)
    _write(folder / f"{name}-key.pem", _key_bytes(key), private=True)
    _write(folder / f"{name}.pem", certificate.public_bytes(serialization.Encoding.PEM))


def make_authority(folder, common_name="bank local CA"):
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = _certificate(common_name, key, name, key, authority=True, days=3650)
    _write(folder / "ca-key.pem", _key_bytes(key), private=True)
    _write(folder / "ca.pem", certificate.public_bytes(serialization.Encoding.PEM))


def make_all(folder, hosts, renew=False, out=None):
    """The CA and every role's certificate in folder; existing files kept unless renew; out (a file) hears what
    was written and kept."""
    def say(text):
        if out:
            print(text, file=out)

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if renew or not (folder / "ca.pem").exists():
        make_authority(folder)
        renew = True            # a new CA invalidates every certificate the old one signed
        say(f"certs: new CA {folder / 'ca.pem'}")
    for name, (common_name, usages) in ROLES.items():
        if not renew and (folder / f"{name}.pem").exists() and (folder / f"{name}-key.pem").exists():
            say(f"certs: kept {folder / name}.pem (remove it, or pass --renew, for a new one)")
            continue
        issue(folder, name, common_name, usages, hosts)
        say(f"certs: wrote {folder / name}.pem for {', '.join(hosts)}")


def main(argv=None):
    load_dotenv(find_dotenv(usecwd=True), override=False)     # TLS_HOSTS and TLS_DIR may be set in .env
    parser = argparse.ArgumentParser(prog="python -m ops.certs", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("TLS_DIR", "var/tls")))
    parser.add_argument("--hosts", default=os.environ.get("TLS_HOSTS", "127.0.0.1,localhost"),
                        help="subject names, comma separated (TLS_HOSTS)")
    parser.add_argument("--renew", action="store_true", help="replace every certificate, the CA's included")
    args = parser.parse_args(argv)
    make_all(args.dir, [host.strip() for host in args.hosts.split(",") if host.strip()], args.renew, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
