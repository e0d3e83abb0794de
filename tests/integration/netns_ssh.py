"""A tiny ssh cluster on this machine: network namespaces, each with a real OpenSSH server.

    root namespace ── bridge tcb<id> 10.A.B.1/24
                        ├── veth ─ namespace tcs<id>h0: <ifname0> 10.A.B.10, sshd on :22
                        └── veth ─ namespace tcs<id>h1: <ifname1> 10.A.B.11, sshd on :22

Every host's sshd runs with its own config (generated ed25519 host key, root login by
key only, StrictModes off, PAM off) and listens only on its namespace's address. The
client key, known_hosts and ssh options live in a temporary directory; `ssh_options`
gives them as `Key=Value` strings for `trainctl --ssh-option`.

A host can get its own view of a directory (`private={path: source}`): its sshd runs
in a private mount namespace where `source` is bind-mounted over `path`, so the same
path holds different files on each host, as on separate machines.

Needs root, iproute2, unshare and /usr/sbin/sshd; `available()` says what is missing.
Everything is removed in `close()`, which the fixtures call even when a test fails.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
# one JSON file per running cluster (creator pid, namespaces, links), so a later run can
# remove what a killed test process could not
REGISTRY = Path("/run/trainctl-test-netns")


def available() -> str | None:
    """None when the harness can run here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "ssh", "ssh-keygen", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not os.access(SSHD, os.X_OK):
        return f"needs {SSHD} (apt-get install openssh-server; scripts/test.sh does this as root)"
    return None


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=30)


@dataclass
class SshHost:
    index: int
    netns: str
    ifname: str  # the host's interface name inside its namespace
    root_ifname: str  # its veth peer on the bridge
    addr: str
    sshd: subprocess.Popen | None = None
    sshd_log: Path | None = None

    def pids(self) -> list[int]:
        """Every process in this namespace, sshd's listener included."""
        out = _run("ip", "netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def other_pids(self) -> list[int]:
        """Processes in the namespace besides the listening sshd (e.g. leftovers of a job)."""
        keep = {self.sshd.pid} if self.sshd else set()
        return [p for p in self.pids() if p not in keep and _alive(p)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # gone (ENOENT), or exiting while read (ESRCH)
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class SshCluster:
    tmp: Path
    hosts: list[SshHost] = field(default_factory=list)
    bridge: str = ""
    ssh_options: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, tmp: Path, n: int = 2, private: list[dict[str, str]] | None = None) -> "SshCluster":
        tmp.mkdir(parents=True, exist_ok=True)
        cluster = cls(tmp=tmp)
        try:
            cluster._start(n, private or [{} for _ in range(n)])
        except BaseException:
            cluster.close()
            raise
        return cluster

    # ------------------------------------------------------------------ setup
    def _start(self, n: int, private: list[dict[str, str]]) -> None:
        sweep_stale()
        tag = uuid.uuid4().hex[:5]
        subnet = _free_subnet()
        self.bridge = f"tcb{tag}"
        self.tag = tag
        REGISTRY.mkdir(parents=True, exist_ok=True)
        (REGISTRY / tag).write_text(json.dumps({
            "pid": os.getpid(), "bridge": self.bridge,
            "netns": [f"tcs{tag}h{i}" for i in range(n)], "links": [f"tcr{tag}{i}" for i in range(n)],
        }))
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{subnet}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i in range(n):
            # different interface names on each host, as on real machines (per-host ifname=)
            host = SshHost(
                index=i, netns=f"tcs{tag}h{i}", ifname=f"tce{tag}{i}", root_ifname=f"tcr{tag}{i}",
                addr=f"{subnet}.{10 + i}",
            )
            self.hosts.append(host)
            _run("ip", "netns", "add", host.netns)
            _run("ip", "link", "add", host.root_ifname, "type", "veth", "peer", "name", host.ifname)
            _run("ip", "link", "set", host.ifname, "netns", host.netns)
            _run("ip", "link", "set", host.root_ifname, "master", self.bridge)
            _run("ip", "link", "set", host.root_ifname, "up")
            _run("ip", "-n", host.netns, "addr", "add", f"{host.addr}/24", "dev", host.ifname)
            _run("ip", "-n", host.netns, "link", "set", host.ifname, "up")
            _run("ip", "-n", host.netns, "link", "set", "lo", "up")
        self._keys()
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation dir
        for host, views in zip(self.hosts, private):
            self._start_sshd(host, views)
        for host in self.hosts:
            self._wait_ready(host)

    def _keys(self) -> None:
        keys = self.tmp / "keys"
        keys.mkdir(exist_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "trainctl-test-host", "-f", str(keys / "host"))
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "trainctl-test-client", "-f", str(keys / "client"))
        (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
        host_pub = (keys / "host.pub").read_text().split()
        (keys / "known_hosts").write_text(
            "".join(f"{h.addr} {host_pub[0]} {host_pub[1]}\n" for h in self.hosts)
        )
        self.ssh_options = [
            f"IdentityFile={keys / 'client'}",
            "IdentitiesOnly=yes",
            f"UserKnownHostsFile={keys / 'known_hosts'}",
            "GlobalKnownHostsFile=/dev/null",
            "StrictHostKeyChecking=yes",
            "LogLevel=ERROR",
        ]

    def _start_sshd(self, host: SshHost, views: dict[str, str]) -> None:
        keys = self.tmp / "keys"
        config = self.tmp / f"sshd_{host.index}.conf"
        config.write_text(
            f"ListenAddress {host.addr}\n"
            "Port 22\n"
            f"HostKey {keys / 'host'}\n"
            f"PidFile {self.tmp / f'sshd_{host.index}.pid'}\n"
            f"AuthorizedKeysFile {keys / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "X11Forwarding no\n"
            "PrintMotd no\n"
            "LogLevel ERROR\n"
        )
        mounts = " && ".join(f"mount --bind '{src}' '{dst}'" for dst, src in views.items())
        script = (mounts + " && " if mounts else "") + f"exec {SSHD} -D -e -f '{config}'"
        host.sshd_log = self.tmp / f"sshd_{host.index}.log"
        with open(host.sshd_log, "wb") as log:
            host.sshd = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--propagation", "private",
                 "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def _wait_ready(self, host: SshHost, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if host.sshd.poll() is not None:
                raise RuntimeError(f"sshd on {host.addr} exited: {host.sshd_log.read_text()}")
            try:
                with socket.create_connection((host.addr, 22), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd on {host.addr} did not come up: {host.sshd_log.read_text()}")

    # ------------------------------------------------------------------ use
    def ssh_argv(self, host: SshHost, command: str) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
        for option in self.ssh_options:
            argv += ["-o", option]
        return argv + ["--", host.addr, command]

    def hostfile_text(self, extra: list[str] | None = None) -> str:
        extra = extra or ["" for _ in self.hosts]
        return "".join(f"{h.addr} ifname={h.ifname} {e}".rstrip() + "\n" for h, e in zip(self.hosts, extra))

    def trainctl_ssh_args(self) -> list[str]:
        args = []
        for option in self.ssh_options:
            args += ["--ssh-option", option]
        return args

    def wait_no_job_processes(self, timeout: float = 30.0) -> dict[str, list[str]]:
        """Wait until no process besides sshd is left in any namespace; return leftovers."""
        deadline = time.monotonic() + timeout
        while True:
            left = {h.addr: [f"{p} {cmdline(p)}" for p in h.other_pids()] for h in self.hosts}
            left = {k: v for k, v in left.items() if v}
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        for host in self.hosts:
            for pid in host.pids():
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            if host.sshd is not None:
                try:
                    host.sshd.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            _run("ip", "netns", "del", host.netns, check=False)
            _run("ip", "link", "del", host.root_ifname, check=False)
        if self.bridge:
            _run("ip", "link", "del", self.bridge, check=False)
        if getattr(self, "tag", None):
            (REGISTRY / self.tag).unlink(missing_ok=True)


def sweep_stale() -> None:
    """Remove clusters whose creating process is gone (a test run killed before its finalizer)."""
    if not REGISTRY.is_dir():
        return
    for entry in REGISTRY.iterdir():
        try:
            info = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(int(info.get("pid", 0))):
            continue
        for netns in info.get("netns", []):
            out = _run("ip", "netns", "pids", netns, check=False).stdout
            for pid in out.split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            _run("ip", "netns", "del", netns, check=False)
        for link in info.get("links", []) + [info.get("bridge", "")]:
            if link:
                _run("ip", "link", "del", link, check=False)
        entry.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_subnet() -> str:
    routes = _run("ip", "-4", "route", "show", check=False).stdout
    for _ in range(200):
        subnet = f"10.{random.randint(200, 249)}.{random.randint(0, 255)}"
        if f"{subnet}." not in routes:
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test bridge")
