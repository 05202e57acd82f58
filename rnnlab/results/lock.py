"""The results folder's lock: an exclusive ``fcntl.flock`` on ``FOLDER/.lock``.

The file holds the pid and host of the holder. The kernel drops a flock when its holder dies,
even by SIGKILL, so a stale lock file never blocks; on filesystems without flock the pid and host
in the file decide. :meth:`rnnlab.results.store.ResultsStore.lock` is the way to take it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path

from rnnlab.errors import UserError
from rnnlab.results.layout import LOCK
from rnnlab.results.parquet_io import disk_full_error, is_disk_full


def _host() -> str:
    return socket.gethostname()


def _read_holder(lock_path: Path) -> tuple[int | None, str]:
    try:
        parts = lock_path.read_text(encoding="utf-8").split()
    except OSError:
        return None, ""
    try:
        return int(parts[0]), (parts[1] if len(parts) > 1 else "")
    except (IndexError, ValueError):
        return None, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _busy(folder: Path, pid: int | None, host: str) -> UserError:
    who = f"pid {pid}" if pid is not None else "pid unknown"
    way_out = "wait for it to finish or pass --out"
    if host and host != _host():
        who += f" on {host}"
        # its liveness cannot be checked from here
        way_out += f"; if that sweep is no longer running, delete {folder / LOCK}"
    return UserError(f"another rnnlab sweep ({who}) is writing to {folder}; {way_out}")


def acquire_lock(folder: Path) -> int:
    """Exclusive lock on ``folder/.lock``; returns its file descriptor.

    ``fcntl.flock`` is released by the kernel when the holder dies (even by SIGKILL), so a
    stale lock file is simply taken over. On filesystems without flock the pid and host written in
    the file decide: a lock whose pid is not alive on this host is stale and taken over.
    The file is unlinked on release; the inode check below makes that race-free.
    """
    lock_path = folder / LOCK
    for _ in range(20):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if is_disk_full(e):
                raise disk_full_error(folder, e) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(folder, *_read_holder(lock_path)) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            pid, host = _read_holder(lock_path)
            if pid is not None and (host != _host() or pid == os.getpid() or _pid_alive(pid)):
                os.close(fd)
                raise _busy(folder, pid, host) from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder unlinked the file between our open and flock
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {_host()}\n".encode())
            os.fsync(fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                lock_path.unlink()                 # ours (we hold it): leave nothing behind
            os.close(fd)
            if is_disk_full(e):
                raise disk_full_error(folder, e) from None
            raise
        return fd
    raise UserError(f"could not lock {lock_path}; try again")


def release_lock(folder: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        (folder / LOCK).unlink()
    os.close(fd)
