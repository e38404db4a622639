"""Moving a package (a local folder of files) to a receiver: atomically, verified and resumable.

The receiver sees a package appear under its final name complete or not at all:
files are written into a hidden staging folder (``<root>/.<name>.part``; receivers
ignore dot names), each one first as a hidden part file that is read back and
checked against the expected size and sha256 before it gets its real name, and
the staging folder is renamed to ``<root>/<name>`` only once it holds exactly
the expected files. A dropped connection leaves the staging folder behind; the
next attempt keeps the files already verified and appends to a part file whose
bytes are a prefix of the local file, so a large file is not sent twice.

A final name is never overwritten or altered: if it exists with the same
content the upload is a no-op ("already_present"), otherwise it is an error
for a person to look at.

After loading a package the receiver writes ``<root>/<name>.ack.json``
(:func:`write_ack`); the sender reads it with :func:`read_ack`.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol, cast, get_args

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
ACK_SUFFIX = ".ack.json"
_MAX_ACK_BYTES = 1024 * 1024  # an ack is a few hundred bytes; refuse to slurp anything big
_SHA256 = re.compile(r"[0-9a-f]{64}")
AckStatus = Literal["accepted", "rejected"]


class TransferError(RuntimeError):
    """A package could not be delivered or an ack not read; the message names the remote path."""


class Store(Protocol):
    """The receiver's file area. Paths are POSIX strings, absolute or relative to the login folder."""

    def size(self, path: str) -> int | None: ...  # None when absent
    def is_dir(self, path: str) -> bool: ...
    def listdir(self, path: str) -> list[str]: ...
    def makedirs(self, path: str) -> None: ...
    def open_read(self, path: str) -> BinaryIO: ...
    def open_write(self, path: str, *, append: bool) -> BinaryIO: ...
    def rename(self, src: str, dst: str) -> None: ...  # must fail rather than overwrite dst
    def remove(self, path: str) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def close(self) -> None: ...


class _FsyncOnClose(io.BufferedWriter):
    """A written file is on disk before its name is published by a rename."""

    def close(self) -> None:
        if not self.closed:
            self.flush()
            os.fsync(self.fileno())
        super().close()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    # A created or renamed entry survives a crash only once its folder is synced.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """A drop folder on this machine (or a mounted share); paths are local paths."""

    def size(self, path: str) -> int | None:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return None

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def makedirs(self, path: str) -> None:
        missing = [p for p in [Path(path), *Path(path).parents] if not p.exists()]
        os.makedirs(path, exist_ok=True)
        for created in missing:
            fsync_dir(created.parent)

    def open_read(self, path: str) -> BinaryIO:
        return open(path, "rb")  # the caller closes it

    def open_write(self, path: str, *, append: bool) -> BinaryIO:
        created = not os.path.lexists(path)
        f = _FsyncOnClose(io.FileIO(path, "a" if append else "w"), buffer_size=CHUNK)
        if created:
            fsync_dir(os.path.dirname(path) or ".")
        return cast(BinaryIO, f)

    def rename(self, src: str, dst: str) -> None:
        # os.rename would replace a file (or an empty folder) at dst; one uploader per
        # package is the caller's rule, so checking first closes the only real gap.
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "rename target exists", dst)
        os.rename(src, dst)
        fsync_dir(os.path.dirname(src) or ".")
        fsync_dir(os.path.dirname(dst) or ".")

    def remove(self, path: str) -> None:
        os.remove(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SftpStore:
    """A folder on an SFTP server, through a paramiko SFTPClient."""

    def __init__(
        self,
        sftp: paramiko.SFTPClient,
        *,
        timeout: float | None = 120.0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._sftp = sftp
        self._on_close = on_close
        # Without a timeout a link that dies silently (no RST) blocks the task forever.
        sftp.get_channel().settimeout(timeout)

    @classmethod
    def from_airflow(cls, conn_id: str) -> SftpStore:
        """Connect with Airflow connection conn_id (type sftp: host, port, login, key_file, host_key)."""
        # Imported here: airflow is heavy, and LocalStore users need none of it.
        from airflow.providers.sftp.hooks.sftp import SFTPHook

        hook = SFTPHook(ssh_conn_id=conn_id)
        # In provider 7.x get_conn() returns a bare SFTPClient and close_conn() leaves the SSH
        # client open; get_managed_conn() closes both when its context exits.
        stack = ExitStack()
        sftp = stack.enter_context(hook.get_managed_conn())
        log.info("connected to sftp connection %s", conn_id)

        def close() -> None:
            try:
                stack.close()
            finally:
                # Closing the SFTP channel of a dropped link raises before the hook gets to
                # the SSH client; close that too (closing twice is harmless).
                if hook.client is not None:
                    hook.client.close()

        return cls(sftp, on_close=close)

    def _lstat(self, path: str) -> Any | None:
        try:
            return self._sftp.lstat(path)
        except FileNotFoundError:
            return None

    def size(self, path: str) -> int | None:
        try:
            return self._sftp.stat(path).st_size
        except FileNotFoundError:
            return None

    def is_dir(self, path: str) -> bool:
        try:
            return stat.S_ISDIR(self._sftp.stat(path).st_mode or 0)
        except FileNotFoundError:
            return False

    def listdir(self, path: str) -> list[str]:
        return sorted(self._sftp.listdir(path))

    def makedirs(self, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if prefix in ("", ".") or self.is_dir(prefix):
                continue
            try:
                self._sftp.mkdir(prefix)
            except OSError:
                if not self.is_dir(prefix):  # someone else may have made it meanwhile
                    raise

    def open_read(self, path: str) -> BinaryIO:
        f = self._sftp.open(path, "rb")
        f.prefetch()  # many reads in flight: read-back costs bandwidth, not round trips
        return cast(BinaryIO, f)

    def open_write(self, path: str, *, append: bool) -> BinaryIO:
        f = self._sftp.open(path, "ab" if append else "wb")
        # Don't wait for each 32 KiB write's status; errors still surface by close() at the
        # latest, and every upload is read back and checked anyway.
        f.set_pipelined(True)
        return cast(BinaryIO, f)

    def rename(self, src: str, dst: str) -> None:
        # posix-rename@openssh.com is one atomic rename(2) but overwrites dst, so check first.
        # (Plain SSH_FXP_RENAME refuses to overwrite but is link+unlink on OpenSSH and
        # server-dependent elsewhere.)
        if self._lstat(dst) is not None:
            raise FileExistsError(errno.EEXIST, "rename target exists", dst)
        try:
            self._sftp.posix_rename(src, dst)
        except OSError as exc:
            # paramiko maps SSH_FX_OP_UNSUPPORTED to IOError("Operation unsupported").
            if "unsupported" not in str(exc).lower():
                raise
            # A server without the OpenSSH extension: the protocol's own rename, which
            # refuses to overwrite (checked above anyway).
            log.info("server has no posix-rename@openssh.com; using SSH_FXP_RENAME for %s", dst)
            self._sftp.rename(src, dst)

    def remove(self, path: str) -> None:
        self._sftp.remove(path)

    def rmdir(self, path: str) -> None:
        self._sftp.rmdir(path)

    def close(self) -> None:
        # Best effort: everything written was verified before, and on a dropped link closing
        # raises too (EOFError), which would hide the TransferError that matters.
        on_close, self._on_close = self._on_close or self._sftp.close, None
        try:
            on_close()
        except Exception as exc:
            log.warning("closing the sftp connection failed: %s: %s", type(exc).__name__, exc)

    def __enter__(self) -> SftpStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class UploadResult:
    status: Literal["uploaded", "already_present"]
    remote_path: str
    files: int
    bytes_sent: int  # bytes actually written this call (less than the total when resumed)
    resumed_files: int


@contextmanager
def _failing_on(path: str) -> Iterator[None]:
    """Name the remote path in any store failure; the original exception stays as __cause__."""
    try:
        yield
    except TransferError:
        raise
    except Exception as exc:
        raise TransferError(f"{path}: {type(exc).__name__}: {exc}") from exc


def _check_plain_name(name: str, what: str) -> None:
    # Dot names are our hidden work names and a slash would leave the package folder.
    if not name or name.startswith(".") or "/" in name or "\x00" in name:
        raise ValueError(f"{what} {name!r} must be a plain, non-hidden file name")


def _digest(f: BinaryIO, limit: int | None = None) -> tuple[int, str]:
    """(bytes read, sha256 hex) of f from its position, up to limit bytes."""
    h, n = hashlib.sha256(), 0
    while limit is None or n < limit:
        chunk = f.read(CHUNK if limit is None else min(CHUNK, limit - n))
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


def _remote_problem(store: Store, path: str, size: int, sha256: str) -> str | None:
    """What is wrong with a remote file (size by stat, then content read back), or None."""
    have = store.size(path)
    if have is None:
        return "missing"
    if have != size:
        return f"size {have}, expected {size}"
    with store.open_read(path) as f:
        n, digest = _digest(f)
    if n != size or digest != sha256:
        return f"read back {n} bytes with sha256 {digest}, expected {size} bytes with {sha256}"
    return None


def _upload_file(
    store: Store, local: Path, staging: str, fname: str, size: int, sha256: str
) -> tuple[int, bool]:
    """Put one file into staging under its name; returns (bytes sent, resumed)."""
    target, part = f"{staging}/{fname}", f"{staging}/.{fname}.part"
    if store.size(target) is not None:
        problem = _remote_problem(store, target, size, sha256)
        if problem is None:
            log.info("%s: already in staging, verified (%d bytes)", target, size)
            return 0, False
        # Staging is our own hidden area: a wrong file there is from an earlier build of the package.
        log.warning("%s: %s; uploading it again", target, problem)
        store.remove(target)

    have = store.size(part)
    offset = 0
    if have is not None and have <= size:
        with store.open_read(part) as remote, local.open("rb") as src:
            _, remote_sha = _digest(remote)
            if _digest(src, have) == (have, remote_sha):
                offset = have
    if offset:
        log.info("%s: resuming after %d of %d bytes", part, offset, size)
    elif have:
        log.warning("%s: its %d bytes do not match the start of %s; starting again", part, have, local)

    sent = 0
    with local.open("rb") as src, store.open_write(part, append=offset > 0) as dst:
        src.seek(offset)
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            sent += len(chunk)

    problem = _remote_problem(store, part, size, sha256)
    if problem is not None:
        store.remove(part)
        raise TransferError(f"{part}: after upload {problem}")
    store.rename(part, target)
    log.info("%s: uploaded %d bytes (%d sent now)", target, size, sent)
    return sent, offset > 0


def upload_package(
    store: Store,
    local_dir: Path,
    remote_root: str,
    name: str,
    expected: Mapping[str, tuple[int, str]],
) -> UploadResult:
    """Deliver local_dir to remote_root/name; expected maps file name -> (size, sha256), in upload order.

    The caller has verified local_dir against expected and puts the manifest last,
    so a receiver that (wrongly) looked inside staging would still find the manifest
    only after the data it describes.
    """
    if not remote_root:
        raise ValueError("remote_root must not be empty")
    _check_plain_name(name, "package name")
    for fname in expected:
        _check_plain_name(fname, "file name")
    root = remote_root.rstrip("/")
    final, staging = f"{root}/{name}", f"{root}/.{name}.part"
    total = sum(size for size, _ in expected.values())

    with _failing_on(final):
        if store.is_dir(final):
            _check_final(store, final, expected)
            log.info("%s: already present with the expected %d files", final, len(expected))
            return UploadResult("already_present", final, len(expected), 0, 0)
        if store.size(final) is not None:
            raise TransferError(f"{final}: exists and is not a folder")

    with _failing_on(staging):
        if not store.is_dir(staging):
            store.makedirs(staging)
        wanted = set(expected) | {f".{f}.part" for f in expected}
        for entry in store.listdir(staging):
            if entry not in wanted:
                # Left by an attempt at another build of this package; staging is ours.
                log.warning("%s/%s: not part of the package, removing it", staging, entry)
                store.remove(f"{staging}/{entry}")

    log.info("%s: uploading %d files, %d bytes", final, len(expected), total)
    sent = resumed = 0
    for fname, (size, sha256) in expected.items():
        with _failing_on(f"{staging}/{fname}"):
            n, was_resumed = _upload_file(store, local_dir / fname, staging, fname, size, sha256)
        sent += n
        resumed += was_resumed

    with _failing_on(staging):
        listing = store.listdir(staging)
        if sorted(listing) != sorted(expected):
            raise TransferError(f"{staging}: holds {sorted(listing)}, expected {sorted(expected)}")
    with _failing_on(final):
        store.rename(staging, final)
    log.info("%s: delivered %d files, %d bytes sent, %d resumed", final, len(expected), sent, resumed)
    return UploadResult("uploaded", final, len(expected), sent, resumed)


def _check_final(store: Store, final: str, expected: Mapping[str, tuple[int, str]]) -> None:
    problems = [f"unexpected file {e!r}" for e in store.listdir(final) if e not in expected]
    for fname, (size, sha256) in expected.items():
        problem = _remote_problem(store, f"{final}/{fname}", size, sha256)
        if problem is not None:
            problems.append(f"{fname}: {problem}")
    if problems:
        raise TransferError(f"{final}: already exists with other content ({'; '.join(problems)}); left as is")


@dataclass(frozen=True)
class Ack:
    """The receiver's verdict on a package it loaded."""

    package: str
    status: AckStatus
    checked_at: datetime  # timezone-aware
    manifest_sha256: str
    problems: tuple[str, ...] = ()


def _parse_ack(data: Any, name: str, path: str) -> Ack:
    if not isinstance(data, dict):
        raise TransferError(f"{path}: not a JSON object")

    def field(key: str, kind: type) -> Any:
        if key not in data:
            raise TransferError(f"{path}: field {key!r} is missing")
        if not isinstance(data[key], kind):
            raise TransferError(f"{path}: field {key!r} is not a {kind.__name__}: {data[key]!r}")
        return data[key]

    package = field("package", str)
    if package != name:
        raise TransferError(f"{path}: field 'package' is {package!r}, expected {name!r}")
    status = field("status", str)
    if status not in get_args(AckStatus):
        raise TransferError(f"{path}: field 'status' is {status!r}, expected one of {get_args(AckStatus)}")
    raw_time = field("checked_at", str)
    try:
        checked_at = datetime.fromisoformat(raw_time)
    except ValueError:
        raise TransferError(f"{path}: field 'checked_at' is not an ISO-8601 datetime: {raw_time!r}") from None
    if checked_at.tzinfo is None:
        raise TransferError(f"{path}: field 'checked_at' has no UTC offset: {raw_time!r}")
    manifest_sha256 = field("manifest_sha256", str)
    # A package without a readable manifest can only be rejected, and has no checksum to name.
    if not (_SHA256.fullmatch(manifest_sha256) or (status == "rejected" and manifest_sha256 == "")):
        raise TransferError(f"{path}: field 'manifest_sha256' is not a sha256 hex: {manifest_sha256!r}")
    problems = field("problems", list)
    if not all(isinstance(p, str) for p in problems):
        raise TransferError(f"{path}: field 'problems' must be a list of strings")
    return Ack(package, status, checked_at, manifest_sha256, tuple(problems))


def read_ack(store: Store, remote_root: str, name: str) -> Ack | None:
    """The receiver's ack for package name, or None while there is none."""
    path = f"{remote_root.rstrip('/')}/{name}{ACK_SUFFIX}"
    with _failing_on(path):
        size = store.size(path)
        if size is None:
            return None
        if size > _MAX_ACK_BYTES:
            raise TransferError(f"{path}: {size} bytes, too large for an ack")
        with store.open_read(path) as f:
            raw = f.read(_MAX_ACK_BYTES + 1)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TransferError(f"{path}: not valid JSON: {exc}") from exc
    ack = _parse_ack(data, name, path)
    log.info("%s: package %s %s", path, name, ack.status)
    return ack


def write_ack(store: Store, remote_root: str, name: str, ack: Ack) -> None:
    """Publish the ack for package name (receiver side); replaces an earlier ack of a re-check."""
    root = remote_root.rstrip("/")
    path, tmp = f"{root}/{name}{ACK_SUFFIX}", f"{root}/.{name}{ACK_SUFFIX}.tmp"
    data = {
        "package": ack.package,
        "status": ack.status,
        "checked_at": ack.checked_at.isoformat(),
        "manifest_sha256": ack.manifest_sha256,
        "problems": list(ack.problems),
    }
    _parse_ack(data, name, path)  # never publish an ack that read_ack would refuse
    body = json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
    with _failing_on(path):
        with store.open_write(tmp, append=False) as f:
            f.write(body)
        if store.size(tmp) != len(body):
            raise TransferError(f"{tmp}: written size differs from {len(body)} bytes")
        if store.size(path) is not None:
            # Rename never overwrites; for the moment between remove and rename a reader
            # sees no ack, which means "not checked yet" and is safe.
            store.remove(path)
        store.rename(tmp, path)
    log.info("%s: wrote %s ack (%d bytes)", path, ack.status, len(body))
