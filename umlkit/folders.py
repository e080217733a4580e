"""Output folders: one process writes a folder at a time, files are written whole, and the operating
system's errors in one line.

**One run per folder.** Two training runs writing one folder mix their files: one run's
``config.json`` and ``best.pt`` end up beside the other's ``last.pt`` and ``history.csv``, and
nothing says so. So whoever writes a run folder holds its lock while it writes
(:func:`folder_lock`): ``umlkit train`` and :func:`umlkit.train.train` for their whole life, the
model cache (:func:`umlkit.runs.get_or_train_cached`) for each entry it reads or trains. A second
process is refused at once, with the process that holds the folder named, or (the model cache)
waits for the first to finish and then finds its run.

The lock is the operating system's: ``fcntl.flock`` on the file ``<folder>/.lock``. It belongs to
the open file, so the system lets go of it when the process ends, however it ends (an exception,
Ctrl-C, ``kill -9``, a crash): a ``.lock`` file that a killed process left behind is not a held
lock, and the next run takes it over and says whose it was. The file records who holds it
(process id, host, command, start time) so that a refusal can name that process; the holder
deletes it when it lets go. Where ``fcntl`` does not exist (Windows) no lock is taken and two runs
into one folder are not prevented. On a network file system the lock is as reliable as that file
system's locking.

**The operating system's errors in one line.** A full disk, a folder without write permission or
a read-only file system surface as an ``OSError`` deep inside some write. A
:class:`CannotWriteError` says the same in one line that names the path and the cause::

    cannot write runs/uml/last.pt: the disk is full (No space left on device)

:func:`reporting_write_errors` turns the errors of a block of writes into one. Taking a folder's
lock creates the folder and writes the lock file, so it also checks that the folder can be
written, before any work is done.

**Atomic writes.** :func:`atomic_write` writes a file under a temporary name in the same folder
and renames it into place with ``os.replace``. A rename within one file system is atomic, so a
reader (or a resumed run after a crash) sees the old file or the new one, never half of one.
Every file umlkit writes that a later run reads (checkpoints, tables, cached arrays, test scores,
settings) goes through this one function.

The module needs the standard library only: ``umlkit train`` takes its lock before it imports
torch, so a second command into a busy folder is refused in a fraction of a second, and a command
that only writes a small file (``python -m umlkit.lab``) does not wait seconds for torch.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no lock (see the module docstring)
    fcntl = None

#: The lock file inside a locked folder.
LOCK_FILE = ".lock"
#: The operating system's errors a write can meet, and how the one-line errors say them.
WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full",
    getattr(errno, "EDQUOT", errno.ENOSPC): "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "no permission to write there",
    errno.EPERM: "no permission to write there",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}
#: The folders this process holds, by (real path, thread): how often each is taken (nesting).
_HELD: dict[tuple[str, int], int] = {}


class CannotWriteError(OSError):
    """A file or folder could not be written: a full disk, no permission, a read-only file system.

    An ``OSError`` with the original ``errno`` and ``strerror``; ``filename`` is the path the user
    knows (the checkpoint, the output folder). Its message is one line::

        cannot write runs/uml/last.pt: the disk is full (No space left on device)
    """

    def __str__(self) -> str:
        cause = WRITE_ERRORS.get(self.errno, self.strerror or "the operating system refused")
        detail = f" ({self.strerror})" if self.strerror and self.strerror != cause else ""
        where = f" {self.filename}" if self.filename else ""
        return f"cannot write{where}: {cause}{detail}"


class FolderInUseError(RuntimeError):
    """Another process holds the folder's lock; the message names the folder and that process."""


def as_write_error(error: OSError, path: str | Path | None = None) -> CannotWriteError | None:
    """``error`` as a :class:`CannotWriteError` naming ``path`` (default: the error's own file),
    or ``None`` when it is not one of :data:`WRITE_ERRORS`."""
    if isinstance(error, CannotWriteError):
        return error
    if error.errno not in WRITE_ERRORS:
        return None
    where = path if path is not None else error.filename
    return CannotWriteError(error.errno, error.strerror, None if where is None else str(where))


@contextmanager
def reporting_write_errors(path: str | Path) -> Iterator[None]:
    """Raise the operating system's write errors inside the block as one :class:`CannotWriteError`
    naming ``path``; any other error passes unchanged.

    >>> with reporting_write_errors(root):
    ...     table.to_csv(root / "labels.csv")
    """
    try:
        yield
    except OSError as error:
        translated = as_write_error(error, path)
        if translated is None or translated is error:
            raise
        raise translated from None


# ------------------------------------------------------------------------------ atomic writes
def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` all at once: ``write(temporary)`` fills a temporary file, then it is renamed.

    The temporary file sits in the same folder (a rename across file systems would not be
    atomic) under a name unique to this call, so two processes writing the same file at once do
    not write into each other's temporary. If ``write`` fails the temporary is removed and
    ``path`` is left as it was. The folder is created if missing.

    A full disk, a missing permission or a read-only file system is raised as one
    :class:`~umlkit.folders.CannotWriteError` line naming ``path``. ``torch.save`` hides that
    error: its own writer raises a ``RuntimeError`` ("... inline_container.cc ... unexpected
    pos ..."), so when ``write`` raises one, the temporary is written to once more, by Python,
    and the operating system's answer (no space left, ...) is the cause; a write that then
    succeeds was not stopped by the system, and the ``RuntimeError`` is raised as it was.

    >>> atomic_write(Path("table.csv"), lambda target: frame.to_csv(target, index=False))

    Args:
        path: the file to write.
        write: called with the temporary path; must create that file (and write nothing else).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    with reporting_write_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        refusal = _refusal_behind(error, temporary)
        temporary.unlink(missing_ok=True)
        if refusal is not None:
            raise as_write_error(refusal, path) from None
        raise
    return path


def _refusal_behind(error: BaseException, temporary: Path) -> OSError | None:
    """The operating system's write error (:data:`~umlkit.folders.WRITE_ERRORS`) behind
    ``error``, a failed write of ``temporary``; ``None`` when it is another error."""
    if isinstance(error, OSError):
        return error if as_write_error(error) is not None else None
    if not isinstance(error, RuntimeError):
        return None
    try:  # torch's writer lost the errno: ask the operating system again
        with temporary.open("ab") as stream:
            stream.write(bytes(1 << 20))
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as refusal:
        return refusal if as_write_error(refusal) is not None else None
    return None


def write_json(path: str | Path, values: Mapping[str, Any]) -> Path:
    """Write ``values`` as indented JSON (one trailing newline), atomically."""
    text = json.dumps(dict(values), indent=1) + "\n"
    return atomic_write(path, lambda target: target.write_text(text))


# ------------------------------------------------------------------------------------ the lock
@contextmanager
def folder_lock(
    folder: str | Path,
    *,
    what: str = "folder",
    wait: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Hold ``folder`` for this process: create it, take its lock, and let go when the block ends.

    >>> with folder_lock("runs/uml", what="--output-dir"):
    ...     ...  # the only process writing runs/uml

    Taking a folder this thread already holds is allowed (``umlkit train`` takes the lock, then
    :func:`umlkit.train.train` takes it again); the lock is let go with the outermost block.
    Folders this call created are removed at the end if they are empty, so a run that fails at
    once leaves no trace.

    Args:
        folder: the folder to hold; created with its parents where missing.
        what: how messages name the folder (``"--output-dir"``, ``"model cache entry"``).
        wait: ``None`` refuses a folder another process holds; a text makes this process wait
            for that one to finish, after ``log`` got ``"waiting for <process> <wait>"``.
        log: receives the notes: waiting, a lock file a dead process left behind.

    Yields:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        FolderInUseError: another process holds ``folder`` and ``wait`` is ``None``.
        FileExistsError: ``folder`` is a file.
        CannotWriteError: ``folder`` cannot be created, or its lock file cannot be written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{what} {folder} is a file, not a folder")
    created = [path for path in (folder, *folder.parents) if not path.exists()]
    key = (os.path.realpath(folder), threading.get_ident())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
        return
    try:
        descriptor = _take(folder, what, wait, log)
        _HELD[key] = 1
        try:
            yield folder
        finally:
            del _HELD[key]
            _let_go(descriptor, folder)
    finally:
        for path in created:  # the deepest first, up to the first that is not empty
            try:
                path.rmdir()
            except OSError:
                break


def _take(folder: Path, what: str, wait: str | None, log) -> int | None:
    """Open and lock ``<folder>/.lock``, write this process into it; return its descriptor
    (``None`` where there is no ``fcntl``: then the folder is only created and checked)."""
    path = folder / LOCK_FILE
    if fcntl is None:
        with reporting_write_errors(folder):
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_holder_record()) + "\n")
        return None
    while True:
        with reporting_write_errors(folder):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the folder was removed between the two: again
                continue
        try:
            _lock(descriptor, folder, what, wait, log)
            if _is_the_file_at(descriptor, path):
                _write_record(descriptor, folder, what, log)
                return descriptor
        except BaseException:
            os.close(descriptor)
            raise
        # Its holder deleted the file as it let go: the lock is on a file no longer there.
        os.close(descriptor)


def _lock(descriptor: int, folder: Path, what: str, wait: str | None, log) -> None:
    """Lock the open lock file: at once, or (with ``wait``) once its holder lets go."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(descriptor)
        if wait is None:
            raise FolderInUseError(
                f"{what} {folder} is in use by {holder}: wait for it to finish, or choose "
                f"another {what}"
            ) from None
        if log is not None:
            log(f"waiting for {holder} {wait}")
        fcntl.flock(descriptor, fcntl.LOCK_EX)


def _write_record(descriptor: int, folder: Path, what: str, log) -> None:
    """Write who holds the lock into the lock file (noting a holder that died holding it)."""
    left = _record(descriptor)
    if left and log is not None:
        log(
            f"{what} {folder}: taking over the lock of {_describe(left)}, which ended without "
            "letting go"
        )
    try:
        with reporting_write_errors(folder):
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, (json.dumps(_holder_record()) + "\n").encode(), 0)
    except CannotWriteError:
        with suppress(OSError):
            (folder / LOCK_FILE).unlink(missing_ok=True)
        raise


def _holder_record() -> dict:
    """What the lock file says about the process holding it."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _command() -> str:
    """This process's command line, as short as it is recognisable (``umlkit train ...``)."""
    if not sys.argv or not sys.argv[0]:
        return "python"
    program = Path(sys.argv[0])
    name = program.parent.name if program.name == "__main__.py" else program.name  # python -m
    return " ".join([name, *sys.argv[1:]])


def _let_go(descriptor: int | None, folder: Path) -> None:
    """Delete the lock file (while still holding it), then let go of the lock."""
    with suppress(OSError):  # a folder that became read-only: closing still lets go
        (folder / LOCK_FILE).unlink(missing_ok=True)
    if descriptor is not None:
        os.close(descriptor)


def _is_the_file_at(descriptor: int, path: Path) -> bool:
    """Whether ``descriptor`` is open on the file that ``path`` names now."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _record(descriptor: int) -> dict:
    """What the lock file says about its holder (empty when it says nothing readable)."""
    try:
        record = json.loads(os.pread(descriptor, 4096, 0).decode())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _holder(descriptor: int) -> str:
    """The process that holds the lock, as the messages name it."""
    for _ in range(20):  # the holder writes its record just after taking the lock
        record = _record(descriptor)
        if record:
            return _describe(record)
        time.sleep(0.02)
    return "another process"


def _describe(record: dict) -> str:
    """A lock file's record as the messages name its process: pid, host, command, start."""
    command = str(record.get("command", ""))
    command = command if len(command) <= 100 else command[:97] + "..."
    return (
        f"process {record.get('pid', '?')} on {record.get('host', '?')} ({command}, since "
        f"{record.get('since', '?')})"
    )
