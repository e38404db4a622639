"""Loaded by every Python process of a guarded run (via PYTHONPATH): records any attempt to reach the network.

Bureau networks are air-gapped, so the pipeline must never try. Loopback and
Unix sockets (the embedded PostgreSQL, a test SMTP server) are allowed; every
other connect or name lookup is refused and written to XINFANG_NETGUARD_LOG,
which the test then reads. Refusing (rather than only logging) also proves
nothing depends on such a call succeeding.
"""

import ipaddress
import os
import socket
import traceback

_LOG = os.environ.get("XINFANG_NETGUARD_LOG")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "", None}


def _is_local(host) -> bool:
    if host in _LOCAL_NAMES or host == socket.gethostname():
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _record(what: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as fh:
            fh.write(f"pid {os.getpid()}: {what}\n{''.join(traceback.format_stack(limit=12))}\n")


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


def _guard(address) -> None:
    if isinstance(address, tuple) and not _is_local(address[0]):
        _record(f"connect {address!r}")
        raise OSError(f"network access refused by the test guard: {address!r}")


def connect(self, address):
    _guard(address)
    return _connect(self, address)


def connect_ex(self, address):
    _guard(address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if not _is_local(host if not isinstance(host, bytes) else host.decode()):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"name lookup refused by the test guard: {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


if _LOG:
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo
