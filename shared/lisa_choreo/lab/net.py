"""The lab's network: namespaces, one bridge without uplink, links that faults cut or slow down.

Layout (``name`` = ``LISA_LAB_NAME``, subnet = ``LISA_LAB_SUBNET``)::

    <name>-sw   the switch: a bridge ``br0`` with no address, its ports ``h1``..``hN`` and
                ``root``; nothing runs there and it has no route at all
    <name>-hI   host I: ``lo`` and ``eth0`` (subnet address .10+I), no default route,
                an nftables output policy that drops anything not for lo or the subnet
    <name>0     in the root namespace: the subnet's .1, for the operator's clients
                (``lab env``); forwarding off on it, so nothing arriving there is routed on

Why the bridge lives in its own namespace and not in the root one: the root namespace then holds
one veth end and one connected /24 route, nothing else (no bridge, no bridge netfilter hooks, no
way for a frame to be switched onto a real interface), and deleting the switch namespace takes
every bridge port with it. IPv6 is disabled on every lab link, so not even link-local traffic or
router solicitations exist.

Faults act on links, never on processes, except ``down`` which also kills every process in the
host's namespace (``ip netns pids``: whatever started it). The link is cut *before* the kill, so
peers receive no FIN or RST from the dying sockets, as with a host that loses power.

Commands go through ``ip``, ``tc`` and ``nft`` (iproute2, nftables): the tools the operator would
type, so each step can be replayed by hand; a failed one raises ``LabError`` with its stderr.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]{0,9}")  # <name>-sw and <name>0 stay within IFNAMSIZ
BRIDGE = "br0"
HOST_IF = "eth0"
ROOT_PORT = "root"
FIRST_HOST = 10  # host I has the subnet's address 10 + I; .1 is the root namespace's


class LabError(RuntimeError):
    """A one-line explanation for the operator."""


@dataclass(frozen=True)
class Layout:
    """Names and addresses of a lab of ``hosts`` hosts: pure, no side effect."""

    name: str
    subnet: ipaddress.IPv4Network
    hosts: int

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise LabError(f"lab name {self.name!r}: 1-10 of [a-z0-9], starting with a letter")
        if not self.subnet.is_private:
            raise LabError(f"lab subnet {self.subnet} is not a private range")
        if self.hosts < 1 or FIRST_HOST + self.hosts >= self.subnet.num_addresses - 1:
            raise LabError(f"{self.hosts} host(s) do not fit in {self.subnet}")

    @property
    def switch(self) -> str:
        return f"{self.name}-sw"

    @property
    def root_if(self) -> str:
        return f"{self.name}0"

    @property
    def root_ip(self) -> str:
        return str(self.subnet[1])

    def netns(self, host: int) -> str:
        return f"{self.name}-h{host}"

    def ip(self, host: int) -> str:
        return str(self.subnet[FIRST_HOST + host])

    def port(self, host: int) -> str:
        """The host's port on the bridge (in the switch namespace)."""
        return f"h{host}"

    def namespaces(self) -> list[str]:
        return [self.switch, *(self.netns(i) for i in range(1, self.hosts + 1))]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LabError(
            f"`{name}` not found: the lab needs iproute2 and nftables (apt-get install "
            "iproute2 nftables) and root"
        )
    return path


def sh(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run one command (``ip``, ``tc``, ``nft``, ``sysctl``); a failure is a ``LabError``."""
    command = [_tool(args[0]), *args[1:]]
    result = subprocess.run(command, capture_output=True, text=True, input=stdin, check=False)
    if check and result.returncode != 0:
        raise LabError(f"`{' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def in_ns(ns: str, *args: str, check: bool = True, stdin: str | None = None):
    return sh("ip", "netns", "exec", ns, *args, check=check, stdin=stdin)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab makes network namespaces: run it as root")


def existing_namespaces(name: str) -> list[str]:
    """Namespaces of the lab ``name`` that exist now (whatever state file says)."""
    out = sh("ip", "-j", "netns", "list").stdout.strip()
    names = [entry["name"] for entry in json.loads(out)] if out else []
    return sorted(n for n in names if re.fullmatch(rf"{re.escape(name)}-(sw|h\d+)", n))


def link_exists(name: str, ns: str | None = None) -> bool:
    where = ("-n", ns) if ns else ()
    return sh("ip", *where, "link", "show", name, check=False).returncode == 0


def check_subnet(layout: Layout) -> None:
    """Refuse a subnet that any route of the root namespace already covers (other than ours)."""
    out = sh("ip", "-j", "-4", "route", "show", "table", "all").stdout.strip()
    clash = overlapping_route(layout, json.loads(out) if out else [])
    if clash:
        raise LabError(
            f"lab subnet {layout.subnet} overlaps the route {clash}: choose another with "
            "LISA_LAB_SUBNET"
        )


def overlapping_route(layout: Layout, routes: list[dict]) -> str | None:
    """The first route (``ip -j route`` objects) whose destination overlaps the lab's subnet,
    leaving out the lab's own link, default routes and local/broadcast entries."""
    for route in routes:
        dst, dev = route.get("dst", ""), route.get("dev")
        if dev == layout.root_if or dst in ("", "default"):
            continue
        if route.get("type") in ("local", "broadcast"):
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if net.version == 4 and net.overlaps(layout.subnet):
            return f"{dst} dev {dev}"
    return None


def _no_ipv6(ns: str) -> None:
    in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")


def guard_rules(layout: Layout) -> str:
    """The host's nftables table: output only to loopback and the lab subnet; anything else is
    counted and dropped (a third barrier after 'no route' and 'no forwarding')."""
    return f"""
table inet lisalab {{
    counter escaped {{ }}
    chain out {{
        type filter hook output priority 0; policy drop;
        oifname "lo" accept
        ip daddr {layout.subnet} accept
        counter name escaped drop
    }}
}}
"""


def build(layout: Layout) -> None:
    """Make the switch, the hosts and the root namespace's link (nothing may exist yet)."""
    require_root()
    if existing_namespaces(layout.name) or link_exists(layout.root_if):
        raise LabError(f"a lab named {layout.name!r} exists: `lisa-choreo lab down` first")
    check_subnet(layout)
    sw = layout.switch
    sh("ip", "netns", "add", sw)
    _no_ipv6(sw)
    sh("ip", "-n", sw, "link", "set", "lo", "up")
    sh("ip", "-n", sw, "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "-n", sw, "link", "set", BRIDGE, "up")
    for host in range(1, layout.hosts + 1):
        ns = layout.netns(host)
        sh("ip", "netns", "add", ns)
        _no_ipv6(ns)
        in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=0")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        port = layout.port(host)
        sh(
            "ip",
            "-n",
            sw,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            HOST_IF,
            "netns",
            ns,
        )
        sh("ip", "-n", sw, "link", "set", port, "master", BRIDGE, "up")
        sh(
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            f"{layout.ip(host)}/{layout.subnet.prefixlen}",
            "dev",
            HOST_IF,
        )
        sh("ip", "-n", ns, "link", "set", HOST_IF, "up")
        in_ns(ns, "nft", "-f", "-", stdin=guard_rules(layout))
    # The root namespace's end: created down, forwarding and IPv6 off, then addressed and up.
    sh("ip", "link", "add", layout.root_if, "type", "veth", "peer", "name", ROOT_PORT, "netns", sw)
    sh("sysctl", "-qw", f"net.ipv6.conf.{layout.root_if}.disable_ipv6=1")
    sh("sysctl", "-qw", f"net.ipv4.conf.{layout.root_if}.forwarding=0")
    sh("ip", "addr", "add", f"{layout.root_ip}/{layout.subnet.prefixlen}", "dev", layout.root_if)
    sh("ip", "link", "set", layout.root_if, "up")
    sh("ip", "-n", sw, "link", "set", ROOT_PORT, "master", BRIDGE, "up")


def pids(ns: str) -> list[int]:
    result = sh("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in result.stdout.split()] if result.returncode == 0 else []


def kill_all(ns: str, timeout_s: float = 30.0) -> int:
    """SIGKILL every process in the namespace until none is left. Returns how many were killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while found := pids(ns):
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise LabError(f"processes {found} in {ns} survive SIGKILL")
        time.sleep(0.05)
    return len(killed)


def set_link(layout: Layout, host: int, up: bool) -> None:
    """The host's cable: its port on the bridge, up or down (the host sees no carrier)."""
    sh("ip", "-n", layout.switch, "link", "set", layout.port(host), "up" if up else "down")


def link_up(layout: Layout, host: int) -> bool:
    out = sh("ip", "-j", "-n", layout.switch, "link", "show", layout.port(host)).stdout
    return "UP" in json.loads(out)[0].get("flags", [])


def has_netem(ns: str) -> bool:
    """Whether the kernel has sch_netem (a module it may load, or built in): tried on a spare
    veth pair of the namespace, so a real link's queue is never touched by the probe."""
    sh("ip", "-n", ns, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
    try:
        return (
            sh(
                "tc",
                "-n",
                ns,
                "qdisc",
                "add",
                "dev",
                "probe0",
                "root",
                "netem",
                "delay",
                "1ms",
                check=False,
            ).returncode
            == 0
        )
    finally:
        sh("ip", "-n", ns, "link", "del", "probe0", check=False)


@dataclass(frozen=True)
class Slowness:
    """What ``fault slow`` does to both directions of a host's link."""

    delay_ms: int
    jitter_ms: int
    loss_pct: float
    rate: str  # the fallback's bandwidth cap (tbf), when the kernel has no netem


def slow_down(layout: Layout, host: int, how: Slowness) -> str:
    """Delay and loss on both directions of the host's link. With netem: ``netem delay loss``
    on the host's eth0 and on its bridge port. Without (CONFIG_NET_SCH_NETEM unset, as on this
    project's CI machine): a ``tbf`` bandwidth cap on both ends, whose queue adds delay under
    load, and random loss from nftables ``numgen`` on the host's input and output. Returns
    which of the two was applied."""
    ends = ((layout.netns(host), HOST_IF), (layout.switch, layout.port(host)))
    if has_netem(layout.netns(host)):
        for ns, dev in ends:
            sh(
                "tc",
                "-n",
                ns,
                "qdisc",
                "replace",
                "dev",
                dev,
                "root",
                "netem",
                "delay",
                f"{how.delay_ms}ms",
                f"{how.jitter_ms}ms",
                "loss",
                f"{how.loss_pct}%",
            )
        return f"netem delay {how.delay_ms}±{how.jitter_ms} ms, loss {how.loss_pct} %"
    for ns, dev in ends:
        sh(
            "tc",
            "-n",
            ns,
            "qdisc",
            "replace",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            how.rate,
            "burst",
            "16kb",
            "latency",
            f"{max(how.delay_ms, 1) * 4}ms",
        )
    per_mille = round(how.loss_pct * 10)
    rules = f"""
table inet lisalab {{
    chain lossy_in {{
        type filter hook input priority -10; policy accept;
        iifname "{HOST_IF}" numgen random mod 1000 < {per_mille} drop
    }}
    chain lossy_out {{
        type filter hook output priority -10; policy accept;
        oifname "{HOST_IF}" numgen random mod 1000 < {per_mille} drop
    }}
}}
"""
    in_ns(layout.netns(host), "nft", "-f", "-", stdin=rules)
    return f"no netem in this kernel: tbf {how.rate} cap, random loss {how.loss_pct} % (nftables)"


def speed_up(layout: Layout, host: int) -> None:
    """Undo ``slow_down`` (whichever form it took); harmless when the link is not slowed."""
    for ns, dev in ((layout.netns(host), HOST_IF), (layout.switch, layout.port(host))):
        sh("tc", "-n", ns, "qdisc", "del", "dev", dev, "root", check=False)
    for chain in ("lossy_in", "lossy_out"):
        in_ns(layout.netns(host), "nft", "delete", "chain", "inet", "lisalab", chain, check=False)


def escaped_packets(layout: Layout, host: int) -> int:
    """Packets the host's guard dropped because they were for outside the lab (expected: 0)."""
    out = in_ns(
        layout.netns(host),
        "nft",
        "-j",
        "list",
        "counter",
        "inet",
        "lisalab",
        "escaped",
        check=False,
    ).stdout
    if not out:
        return 0
    for item in json.loads(out).get("nftables", []):
        if "counter" in item:
            return int(item["counter"].get("packets", 0))
    return 0


def destroy(name: str, root_if: str) -> dict[str, int]:
    """Kill every process in the lab's namespaces, delete them and the root link. Idempotent:
    works from whatever is left (a half-built lab, a lost state file)."""
    require_root()
    removed = {"processes": 0, "namespaces": 0, "links": 0}
    if link_exists(root_if):
        sh("ip", "link", "del", root_if)
        removed["links"] += 1
    for ns in existing_namespaces(name):
        removed["processes"] += kill_all(ns)
        sh("ip", "netns", "del", ns)
        removed["namespaces"] += 1
    # A deleted namespace's veth ends go away asynchronously: wait, so that `down` returning
    # means gone (and a new lab can reuse the names at once).
    deadline = time.monotonic() + 10
    while link_exists(root_if) and time.monotonic() < deadline:
        time.sleep(0.05)
    return removed
