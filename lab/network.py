"""Simulated hosts on one machine: a network namespace per host, one bridge, and silent drops between hosts.

Nothing can leave the machine. The bridge lives in a namespace of its own and both ends of every veth pair are
created inside namespaces, so the root namespace has no interface on the lab and no route to it; hosts have an
address on the lab's subnet and nothing else: no default route, no NAT. Partitions are nftables drop rules in the
hosts' own namespaces, in both directions: a cut-off peer's packets vanish, as a real partition's do.
"""
import os
import signal
import subprocess

from shared.gunicorn_hooks import process_alive

PREFIX = "banklab-"             # every namespace of the lab: "banklab-<pid of the run>-<host>"
SUBNET = "10.77.0"              # hosts are 10.77.0.2, .3, ...; a /24 that only the lab's hosts are on
TABLE = "banklab"               # the nftables table of a host's cuts
COMMAND_TIMEOUT = 20            # seconds any ip or nft command may take


class LabError(Exception):
    """The lab could not be built, or is not sealed off from the world."""


def command(argv, stdin=None, check=True):
    """Run argv and return what it printed; LabError if it failed and check says it must not."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout + done.stderr


def lab_namespaces():
    """Every namespace of a lab, this run's or a leftover's."""
    listed = command(["ip", "netns", "list"]).split("\n")
    return [line.split()[0] for line in listed if line.startswith(PREFIX)]


def stop_processes_in(namespace):
    """SIGKILL every process in namespace: one started in it outlives the namespace's deletion otherwise."""
    for pid in command(["ip", "netns", "pids", namespace], check=False).split():
        if pid.isdigit():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def remove(namespaces):
    for namespace in namespaces:
        stop_processes_in(namespace)
    for namespace in namespaces:
        command(["ip", "netns", "delete", namespace], check=False)


def sweep():
    """Remove what labs killed before their clean-up left behind (their run's pid is gone); return the names."""
    leftovers = []
    for namespace in lab_namespaces():
        owner = namespace[len(PREFIX):].split("-", 1)[0]
        if not owner.isdigit() or not process_alive(int(owner)):
            leftovers.append(namespace)
    remove(leftovers)
    return leftovers


class Network:
    """The lab's hosts by name: their namespaces, their addresses, and the cuts between them."""

    def __init__(self, hosts, run=None):
        self.prefix = f"{PREFIX}{run or os.getpid()}-"
        self.hosts = list(hosts)
        self.addresses = {host: f"{SUBNET}.{index}" for index, host in enumerate(self.hosts, start=2)}
        self._cut_off = {host: set() for host in self.hosts}    # host -> hosts whose packets it drops

    @property
    def bridge(self):
        return self.prefix + "bridge"

    def namespace(self, host):
        return self.prefix + host

    def wrapper(self, host):
        """What a command runs under to run on host."""
        return ("ip", "netns", "exec", self.namespace(host))

    def describe(self):
        """What a process inside the lab needs to know of it (see from_description)."""
        return {"prefix": self.prefix, "hosts": self.hosts}

    @classmethod
    def from_description(cls, description):
        network = cls(description["hosts"])
        network.prefix = description["prefix"]
        return network

    def create(self):
        command(["ip", "netns", "add", self.bridge])
        command(["ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge"])
        command(["ip", "-n", self.bridge, "link", "set", "br0", "up"])
        for index, host in enumerate(self.hosts):
            namespace = self.namespace(host)
            command(["ip", "netns", "add", namespace])
            # Made inside the bridge's namespace, its peer sent straight into the host's: never in the root one.
            command(["ip", "-n", self.bridge, "link", "add", f"v{index}", "type", "veth", "peer", "name", "eth0",
                     "netns", namespace])
            command(["ip", "-n", self.bridge, "link", "set", f"v{index}", "master", "br0", "up"])
            command(["ip", "-n", namespace, "addr", "add", f"{self.addresses[host]}/24", "dev", "eth0"])
            command(["ip", "-n", namespace, "link", "set", "eth0", "up"])
            command(["ip", "-n", namespace, "link", "set", "lo", "up"])
        self.check_sealed()

    def check_sealed(self):
        """LabError unless no host can send anywhere but to the lab and the root namespace has no way in."""
        if SUBNET + "." in command(["ip", "-o", "addr", "show"]):
            raise LabError("the root namespace has an address on the lab's subnet")
        for host in self.hosts:
            namespace = self.namespace(host)
            if command(["ip", "-n", namespace, "route", "show", "default"]).strip():
                raise LabError(f"{host} has a default route")
            outside = command(["ip", "-n", namespace, "route", "get", "8.8.8.8"], check=False)
            if "unreachable" not in outside:
                raise LabError(f"{host} can route to 8.8.8.8: {outside.strip()}")

    def destroy(self):
        remove([self.namespace(host) for host in self.hosts] + [self.bridge])

    def cut(self, side, other_side):
        """Drop every packet between each host of side and each host of other_side, both ways."""
        for host in side:
            self._cut_off[host].update(h for h in other_side if h != host)
        for host in other_side:
            self._cut_off[host].update(h for h in side if h != host)
        for host in set(side) | set(other_side):
            self._apply(host)

    def isolate(self, host):
        self.cut([host], [h for h in self.hosts if h != host])

    def heal(self):
        for host in self.hosts:
            if self._cut_off[host]:
                self._cut_off[host].clear()
                self._apply(host)

    def _apply(self, host):
        # Declaring the table first makes its deletion safe when it does not exist yet.
        rules = [f"table inet {TABLE}", f"delete table inet {TABLE}"]
        dropped = ", ".join(self.addresses[h] for h in sorted(self._cut_off[host]))
        if dropped:
            rules.append(f"table inet {TABLE} {{\n"
                         f"  chain input {{ type filter hook input priority 0; policy accept; "
                         f"ip saddr {{ {dropped} }} drop; }}\n"
                         f"  chain output {{ type filter hook output priority 0; policy accept; "
                         f"ip daddr {{ {dropped} }} drop; }}\n}}")
        command([*self.wrapper(host), "nft", "-f", "-"], stdin="\n".join(rules) + "\n")
