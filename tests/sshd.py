"""A real OpenSSH server on loopback for the tests, and a TCP proxy that drops the connection.

``running_sshd(workdir)`` generates ed25519 host and client keys, writes an
sshd_config that only accepts the client key of the current user, starts
``/usr/sbin/sshd -D -e`` on a free loopback port and stops it at the end. It
works as root (CI) and as a normal user (sshd then can only log in that user,
which is all the tests need). The server's files are this machine's files, so
a test may check what arrived through the file system as well.

``DroppingProxy`` forwards a loopback port to the server and cuts both sockets
once more than a given number of bytes went from the client to the server: a
connection that dies mid-upload.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paramiko

SSHD = Path("/usr/sbin/sshd")  # sshd refuses to start unless called by an absolute path
HOST = "127.0.0.1"


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    user: str
    client_key: Path  # private key file (OpenSSH format) authorized for user
    host_public_key: str  # "ssh-ed25519 AAAA...", as a known_hosts entry would carry it
    log_file: Path  # sshd's own log (-e), for when a test fails

    def airflow_conn(self, *, port: int | None = None, host_key: str | None = None) -> str:
        """The JSON of an Airflow ``sftp`` connection to this server (or to a proxy in front of it).

        The host key is given, so it is checked: with a host_key extra the SSH hook accepts
        only that key for ``[host]:port``.
        """
        return json.dumps(
            {
                "conn_type": "sftp",
                "host": self.host,
                "port": port or self.port,
                "login": self.user,
                "extra": {
                    "key_file": str(self.client_key),
                    "host_key": host_key or self.host_public_key,
                    "no_host_key_check": False,
                    "look_for_keys": False,  # only the key given, not whatever is in ~/.ssh
                    "conn_timeout": 10,
                },
            }
        )

    def airflow_env(self, conn_id: str, **kwargs: int | str | None) -> tuple[str, str]:
        """(name, value) of the AIRFLOW_CONN_<ID> variable defining conn_id; kwargs as airflow_conn."""
        return f"AIRFLOW_CONN_{conn_id.upper()}", self.airflow_conn(**kwargs)  # type: ignore[arg-type]


def keygen(path: Path) -> str:
    """Make an ed25519 key pair at path (+ .pub); returns the public key as "type base64"."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "xinfang-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    key_type, data = path.with_name(path.name + ".pub").read_text().split()[:2]
    return f"{key_type} {data}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _write_config(workdir: Path, port: int) -> Path:
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {HOST}",
                f"Port {port}",
                f"HostKey {workdir / 'host_key'}",
                f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
                f"PidFile {workdir / 'sshd.pid'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",  # the temp folder's permissions are not sshd's business here
                "PermitRootLogin prohibit-password",  # CI runs the tests as root
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    return config


def _children(pid: int) -> list[int]:
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat_file.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process has just gone
        if ppid == pid:
            found.append(int(stat_file.parent.name))
    return found


@contextmanager
def running_sshd(workdir: Path, *, start_timeout: float = 10.0) -> Iterator[SshServer]:
    """Start an sshd on a free loopback port serving workdir's keys; stop it on exit."""
    if not SSHD.exists():
        raise RuntimeError(f"{SSHD} is missing: run `make test-setup` (it installs openssh-server)")
    if os.geteuid() == 0:
        # Debian's sshd, run as root, wants its privilege-separation folder.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    host_public_key = keygen(workdir / "host_key")
    client_public_key = keygen(workdir / "client_key")
    (workdir / "authorized_keys").write_text(client_public_key + "\n")
    port = free_port()
    config = _write_config(workdir, port)
    log_file = workdir / "sshd.log"
    with log_file.open("wb") as log:
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {proc.returncode}:\n{log_file.read_text()}")
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd not listening on {port}:\n{log_file.read_text()}") from None
                time.sleep(0.05)
        yield SshServer(
            host=HOST,
            port=port,
            user=pwd.getpwuid(os.geteuid()).pw_name,  # not getpass: $USER may be stale under su/sudo
            client_key=workdir / "client_key",
            host_public_key=host_public_key,
            log_file=log_file,
        )
    finally:
        # Let sessions of connections just closed finish first: sshd reaps them, whereas once
        # orphaned they stay zombies where PID 1 is not a reaping init (containers).
        deadline = time.monotonic() + 3
        while _children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def direct_sftp(server: SshServer) -> Iterator[paramiko.SFTPClient]:
    """A plain paramiko SFTP session (no Airflow), host key checked, for looking at the server."""
    client = paramiko.SSHClient()
    key_type, data = server.host_public_key.split()
    host_key = paramiko.Ed25519Key(data=base64.b64decode(data))
    assert key_type == host_key.get_name()
    client.get_host_keys().add(f"[{server.host}]:{server.port}", key_type, host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        server.host,
        port=server.port,
        username=server.user,
        key_filename=str(server.client_key),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    try:
        with client.open_sftp() as sftp:
            yield sftp
    finally:
        client.close()


class DroppingProxy:
    """Forwards a loopback port to target_port; cuts the connection after cut_after client bytes.

    The cut is a reset (SO_LINGER 0) of both sockets, as when a link dies: the client's
    next read or write fails, and the server drops what it had not yet taken in.
    """

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.forwarded = 0  # client -> server bytes, all connections
        self.cut = threading.Event()
        self._stop = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.1)  # so the accept loop notices close()
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> DroppingProxy:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection((HOST, self.target_port))
            pair = (client, upstream)
            with self._lock:
                self._sockets += pair
            if self.cut.is_set():
                self._reset(pair)
                continue
            self._spawn(self._pump, client, upstream, True, pair)
            self._spawn(self._pump, upstream, client, False, pair)

    def _pump(
        self, src: socket.socket, dst: socket.socket, counted: bool, pair: tuple[socket.socket, ...]
    ) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if counted:
                    with self._lock:
                        self.forwarded += len(data)
                        over = self.forwarded > self.cut_after
                    if over:
                        self.cut.set()
                        self._reset(pair)
                        return
        except OSError:
            pass  # the other direction reset the sockets
        self._reset(pair)

    @staticmethod
    def _reset(pair: tuple[socket.socket, ...]) -> None:
        for sock in pair:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        self._reset(tuple(sockets))
        for thread in self._threads:
            thread.join(timeout=5)
