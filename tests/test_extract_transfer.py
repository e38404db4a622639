"""Package transfer to a receiver: a real OpenSSH server on loopback (tests/sshd.py) and a local drop folder.

The sshd runs as the test user on this machine, so what it wrote can also be
checked through the file system (inode, mtime in ns, content): that is how
"nothing changed" is asserted. Where the brief is "over a fresh connection",
a plain paramiko session (no Airflow) looks.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paramiko
import pytest
from sshd import DroppingProxy, SshServer, direct_sftp, running_sshd

from xinfang.extract.transfer import (
    Ack,
    LocalStore,
    SftpStore,
    Store,
    TransferError,
    UploadResult,
    read_ack,
    upload_package,
    write_ack,
)

CONN_ID = "xinfang_test_sftp"
NAME = "2025-06"
BIG = "ext_province__big.bin"
OLD = 1_000_000_000  # an mtime far in the past: a rewrite or touch would move it


@dataclass(frozen=True)
class Package:
    dir: Path
    expected: dict[str, tuple[int, str]]

    @property
    def total(self) -> int:
        return sum(size for size, _ in self.expected.values())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A real OpenSSH server on 127.0.0.1 for the session, accepting the current user's test key."""
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture()
def sftp_conn_id(sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Airflow connection id of a direct sftp connection to sshd (host key checked)."""
    monkeypatch.setenv(*sshd.airflow_env(CONN_ID))
    return CONN_ID


@pytest.fixture(scope="session")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    """A small package: a CSV, 4 MiB of random bytes, and the manifest last."""
    folder = tmp_path_factory.mktemp("package")
    rng = random.Random(20250630)
    files = {
        "ext_province__matters.csv": b"matter_id,district\n"
        + b"".join(f"QJ{i:06d},清江区\n".encode() for i in range(500)),
        BIG: rng.randbytes(4 * 1024 * 1024 + 12345),
    }
    files["manifest.json"] = json.dumps(
        {"period": NAME, "files": {k: _sha(v) for k, v in files.items()}}
    ).encode()
    for fname, data in files.items():
        (folder / fname).write_bytes(data)
    return Package(folder, {fname: (len(data), _sha(data)) for fname, data in files.items()})


@pytest.fixture(params=["sftp", "local"])
def store_factory(request: pytest.FixtureRequest) -> Callable[[], AbstractContextManager[Store]]:
    """Opens a fresh store of either kind; each call is a new connection for sftp."""
    if request.param == "local":
        return LocalStore
    conn_id = request.getfixturevalue("sftp_conn_id")
    return lambda: SftpStore.from_airflow(conn_id)


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Everything under root: relative path -> (inode, mtime ns, size, sha256 or '' for folders)."""
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.stat()
        digest = _sha(path.read_bytes()) if path.is_file() else ""
        out[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns, st.st_size, digest)
    return out


def age(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.utime(path, (OLD, OLD))


def assert_delivered(root: Path, package: Package) -> None:
    """Exactly the package under its final name, nothing hidden left over anywhere."""
    assert sorted(p.name for p in root.iterdir()) == [NAME]
    final = root / NAME
    assert sorted(p.name for p in final.iterdir()) == sorted(package.expected)
    for fname, (size, sha) in package.expected.items():
        data = (final / fname).read_bytes()
        assert (len(data), _sha(data)) == (size, sha), fname


def test_delivers_a_package(store_factory, package: Package, tmp_path: Path) -> None:
    root = tmp_path / "drop" / "province"  # not there yet: staging creates it
    with store_factory() as store:
        result = upload_package(store, package.dir, str(root), NAME, package.expected)
    assert result == UploadResult("uploaded", f"{root}/{NAME}", 3, package.total, 0)
    assert_delivered(root, package)


def test_rerun_after_success_changes_nothing(store_factory, package: Package, tmp_path: Path) -> None:
    root = tmp_path / "drop"
    with store_factory() as store:
        upload_package(store, package.dir, str(root), NAME, package.expected)
    age(root)
    before = snapshot(root)
    with store_factory() as store:
        result = upload_package(store, package.dir, str(root), NAME, package.expected)
    assert result == UploadResult("already_present", f"{root}/{NAME}", 3, 0, 0)
    assert snapshot(root) == before


@pytest.mark.parametrize("change", ["content", "extra file", "missing file"])
def test_other_content_under_final_name_is_refused(
    store_factory, package: Package, tmp_path: Path, change: str
) -> None:
    root = tmp_path / "drop"
    final = root / NAME
    final.mkdir(parents=True)
    for fname in package.expected:
        (final / fname).write_bytes((package.dir / fname).read_bytes())
    if change == "content":  # same size, one byte different: only the read-back can tell
        data = bytearray((final / BIG).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (final / BIG).write_bytes(bytes(data))
    elif change == "extra file":
        (final / "notes.txt").write_text("x")
    else:
        (final / "manifest.json").unlink()
    age(root)
    before = snapshot(root)
    with store_factory() as store, pytest.raises(TransferError) as err:
        upload_package(store, package.dir, str(root), NAME, package.expected)
    assert str(final) in str(err.value)
    assert {"content": BIG, "extra file": "notes.txt", "missing file": "manifest.json"}[change] in str(
        err.value
    )
    assert snapshot(root) == before


@pytest.mark.parametrize("part", ["different bytes", "longer than the file", "valid prefix"])
def test_part_file_is_resumed_only_when_it_is_a_prefix(
    store_factory, package: Package, tmp_path: Path, part: str
) -> None:
    root = tmp_path / "drop"
    staging = root / f".{NAME}.part"
    staging.mkdir(parents=True)
    local = (package.dir / BIG).read_bytes()
    seeded = {
        "different bytes": bytes(b ^ 0x5A for b in local[: 1 << 20]),
        "longer than the file": local + b"tail",
        "valid prefix": local[: 1 << 20],
    }[part]
    (staging / f".{BIG}.part").write_bytes(seeded)
    with store_factory() as store:
        result = upload_package(store, package.dir, str(root), NAME, package.expected)
    if part == "valid prefix":
        assert (result.resumed_files, result.bytes_sent) == (1, package.total - len(seeded))
    else:
        assert (result.resumed_files, result.bytes_sent) == (0, package.total)
    assert_delivered(root, package)


def test_upload_that_does_not_read_back_right_is_removed_and_refused(
    store_factory, package: Package, tmp_path: Path
) -> None:
    # As if the local file changed after the caller verified it: the read-back must catch it.
    root = tmp_path / "drop"
    expected = dict(package.expected)
    size, _ = expected["ext_province__matters.csv"]
    expected["ext_province__matters.csv"] = (size, "0" * 64)
    with store_factory() as store, pytest.raises(TransferError) as err:
        upload_package(store, package.dir, str(root), NAME, expected)
    part = f"{root}/.{NAME}.part/.ext_province__matters.csv.part"
    assert part in str(err.value) and "0" * 64 in str(err.value)
    assert sorted(p.name for p in root.iterdir()) == [f".{NAME}.part"]
    assert list((root / f".{NAME}.part").iterdir()) == []


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_store_rename_never_overwrites(store_factory, tmp_path: Path, kind: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    if kind == "file":
        src.write_text("new")
        dst.write_text("old")
    else:  # an empty folder is what os.rename and posix-rename would silently replace
        (src / "x").mkdir(parents=True)
        dst.mkdir()
    before = snapshot(tmp_path)
    with store_factory() as store, pytest.raises(FileExistsError):
        store.rename(str(src), str(dst))
    assert snapshot(tmp_path) == before


def test_dropped_connection_leaves_no_final_name_and_resumes(
    sshd: SshServer, sftp_conn_id: str, package: Package, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "drop"
    final, staging = f"{root}/{NAME}", f"{root}/.{NAME}.part"
    big_size = package.expected[BIG][0]
    with DroppingProxy(sshd.port, cut_after=3 * 1024 * 1024) as proxy:
        monkeypatch.setenv(*sshd.airflow_env(sftp_conn_id, port=proxy.port))
        with pytest.raises(TransferError) as err, SftpStore.from_airflow(sftp_conn_id) as store:
            upload_package(store, package.dir, str(root), NAME, package.expected)
        assert proxy.cut.is_set()
    assert str(root) in str(err.value)
    assert isinstance(err.value.__cause__, (paramiko.SSHException, EOFError, OSError))

    part = f"{staging}/.{BIG}.part"
    with direct_sftp(sshd) as sftp:
        assert sftp.listdir(str(root)) == [f".{NAME}.part"]  # no final name, only hidden staging
        assert 0 < sftp.stat(part).st_size < big_size  # cut in the middle of the big file

    monkeypatch.setenv(*sshd.airflow_env(sftp_conn_id))
    with SftpStore.from_airflow(sftp_conn_id) as store:
        result = upload_package(store, package.dir, str(root), NAME, package.expected)
    assert result.status == "uploaded" and result.remote_path == final
    assert result.resumed_files >= 1
    assert 0 < result.bytes_sent < package.total
    assert_delivered(root, package)


def test_host_key_of_the_connection_is_checked(sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    # The client's public key is a valid ed25519 key, just not the server's.
    wrong = (sshd.client_key.parent / "client_key.pub").read_text().split()[:2]
    monkeypatch.setenv(*sshd.airflow_env(CONN_ID, host_key=" ".join(wrong)))
    hook = SFTPHook(ssh_conn_id=CONN_ID, conn_retry_attempts=1)  # the default retries take ~10 s
    before = set(threading.enumerate())
    with pytest.raises(paramiko.BadHostKeyException), hook.get_managed_conn():
        pass
    # The hook leaves the refused connection's transport running (thread and socket); close it
    # so sshd is not left waiting for a login.
    for thread in set(threading.enumerate()) - before:
        if isinstance(thread, paramiko.Transport):
            thread.close()


def _ack(**changes) -> Ack:
    fields = {
        "package": NAME,
        "status": "rejected",
        "checked_at": datetime(2025, 7, 2, 9, 30, tzinfo=UTC),
        "manifest_sha256": "ab" * 32,
        "problems": ("第3行: 区县代码缺失",),
    }
    return Ack(**(fields | changes))


def test_ack_round_trip(store_factory, tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    with store_factory() as store:
        assert read_ack(store, str(root), NAME) is None
        write_ack(store, str(root), NAME, _ack())
        assert read_ack(store, str(root), NAME) == _ack()
        # A re-check replaces the verdict.
        write_ack(store, str(root), NAME, _ack(status="accepted", problems=()))
        assert read_ack(store, str(root), NAME) == _ack(status="accepted", problems=())
    assert sorted(p.name for p in root.iterdir()) == [f"{NAME}.ack.json"]
    assert json.loads((root / f"{NAME}.ack.json").read_text())["checked_at"] == "2025-07-02T09:30:00+00:00"


GOOD_ACK = {
    "package": NAME,
    "status": "accepted",
    "checked_at": "2025-07-02T09:30:00+08:00",
    "manifest_sha256": "ab" * 32,
    "problems": [],
}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"package": "2025-06", "status": ', "JSON"),
        (json.dumps(GOOD_ACK | {"package": "2025-05"}).encode(), "'package'"),
        (json.dumps(GOOD_ACK | {"status": "ok"}).encode(), "'status'"),
        (json.dumps(GOOD_ACK | {"checked_at": "2 July 2025"}).encode(), "'checked_at'"),
        (json.dumps(GOOD_ACK | {"checked_at": "2025-07-02T09:30:00"}).encode(), "'checked_at'"),
        (json.dumps(GOOD_ACK | {"manifest_sha256": "abc"}).encode(), "'manifest_sha256'"),
        (json.dumps(GOOD_ACK | {"problems": "none"}).encode(), "'problems'"),
        (json.dumps({k: v for k, v in GOOD_ACK.items() if k != "status"}).encode(), "'status'"),
        (json.dumps([GOOD_ACK]).encode(), "JSON object"),
    ],
)
def test_malformed_ack_names_path_and_field(
    sshd: SshServer, sftp_conn_id: str, tmp_path: Path, body: bytes, field: str
) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    (root / f"{NAME}.ack.json").write_bytes(body)
    with SftpStore.from_airflow(sftp_conn_id) as store:
        with pytest.raises(TransferError) as err:
            read_ack(store, str(root), NAME)
        # the same file, well formed, is read: the failure is the field, not the path
        (root / f"{NAME}.ack.json").write_text(json.dumps(GOOD_ACK))
        assert read_ack(store, str(root), NAME).status == "accepted"
    assert f"{root}/{NAME}.ack.json" in str(err.value)
    assert field in str(err.value)
