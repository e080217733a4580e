"""umlkit.folders: one process per folder (the lock), atomic writes, and the operating system's errors
in one line."""

import errno
import os
import subprocess
import sys
import time

import pytest

import umlkit.folders as folders
from umlkit.folders import (
    LOCK_FILE,
    CannotWriteError,
    FolderInUseError,
    as_write_error,
    atomic_write,
    folder_lock,
    reporting_write_errors,
    write_json,
)

needs_fcntl = pytest.mark.skipif(folders.fcntl is None, reason="no fcntl here: no lock is taken")


def let_go(holder):
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0


@needs_fcntl
def test_a_folder_in_use_is_refused_at_once_naming_the_process(tmp_path, start_folder_holder):
    folder = tmp_path / "run"
    holder = start_folder_holder(folder)
    try:
        started = time.perf_counter()
        with pytest.raises(FolderInUseError) as caught:
            with folder_lock(folder, what="--output-dir"):
                pass
        assert time.perf_counter() - started < 1.0
    finally:
        let_go(holder)
    message = str(caught.value)
    assert message.startswith(f"--output-dir {folder} is in use by process {holder.pid} on ")
    assert message.endswith("wait for it to finish, or choose another --output-dir")
    assert "\n" not in message
    # the holder deleted its lock file as it let go; the folder is free again
    assert not (folder / LOCK_FILE).exists()
    with folder_lock(folder):
        assert (folder / LOCK_FILE).is_file()


@needs_fcntl
def test_waiting_for_the_folder_says_for_whom_and_takes_it_when_let_go(
    tmp_path, start_folder_holder
):
    folder = tmp_path / "entry"
    holder = start_folder_holder(folder)
    notes = []

    def note(line):
        notes.append(line)
        holder.stdin.close()  # the holder finishes while this process waits

    with folder_lock(folder, wait="training the same configuration", log=note):
        assert holder.wait(timeout=30) == 0
        assert str(os.getpid()) in (folder / LOCK_FILE).read_text()
    assert len(notes) == 1
    assert notes[0].startswith(f"waiting for process {holder.pid} on ")
    assert notes[0].endswith("training the same configuration")


@needs_fcntl
def test_a_lock_file_left_by_a_killed_process_is_taken_over_and_named(
    tmp_path, start_folder_holder
):
    folder = tmp_path / "run"
    holder = start_folder_holder(folder)
    holder.kill()  # no chance to let go or to delete its lock file
    holder.wait(timeout=30)
    assert (folder / LOCK_FILE).is_file()
    notes = []
    with folder_lock(folder, what="--output-dir", log=notes.append):
        pass
    assert len(notes) == 1
    assert notes[0].startswith(
        f"--output-dir {folder}: taking over the lock of process {holder.pid} "
    )
    assert notes[0].endswith("which ended without letting go")


def test_the_same_thread_may_take_a_folder_again_and_created_folders_are_removed(tmp_path):
    folder = tmp_path / "a" / "b"
    with folder_lock(folder):
        with folder_lock(folder):  # umlkit train, then train() inside it
            assert (folder / LOCK_FILE).is_file()
        assert (folder / LOCK_FILE).is_file()  # still held: only the outer block lets go
    assert not (tmp_path / "a").exists()  # created by the lock and left empty: removed
    kept = tmp_path / "kept"
    with folder_lock(kept):
        (kept / "last.pt").write_bytes(b"x")
    assert [path.name for path in kept.iterdir()] == ["last.pt"]


def test_without_fcntl_the_folder_is_only_created_and_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "fcntl", None)  # as on Windows
    with folder_lock(tmp_path / "run"):
        with folder_lock(tmp_path / "run"):
            assert (tmp_path / "run" / LOCK_FILE).is_file()
    assert not (tmp_path / "run").exists()


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "run").write_text("")
    with pytest.raises(FileExistsError, match=r"^--output-dir .*run is a file, not a folder$"):
        with folder_lock(tmp_path / "run", what="--output-dir"):
            pass


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.ENOSPC, "the disk is full (No space left on device)"),
        (errno.EROFS, "the file system is read-only (Read-only file system)"),
        (errno.EACCES, "no permission to write there (Permission denied)"),
    ],
)
def test_the_operating_systems_write_errors_are_one_line(tmp_path, code, cause):
    with pytest.raises(CannotWriteError) as caught:
        with reporting_write_errors(tmp_path / "last.pt"):
            raise OSError(code, os.strerror(code), "/somewhere/.last.pt.123.tmp")
    assert str(caught.value) == f"cannot write {tmp_path / 'last.pt'}: {cause}"
    assert caught.value.errno == code and isinstance(caught.value, OSError)
    # other errors pass unchanged
    with pytest.raises(FileNotFoundError):
        with reporting_write_errors(tmp_path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "x")
    assert as_write_error(OSError(errno.EIO, "Input/output error")) is None


def test_a_folder_that_cannot_be_written_is_one_line_before_any_work(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(args[0]))

    monkeypatch.setattr(folders.os, "open", read_only)
    with pytest.raises(CannotWriteError) as caught:
        with folder_lock(tmp_path / "run", what="--output-dir"):
            raise AssertionError("the block ran in a folder that cannot be written")
    assert str(caught.value) == (
        f"cannot write {tmp_path / 'run'}: the file system is read-only (Read-only file system)"
    )
    assert not (tmp_path / "run").exists()  # the folder it created is removed again


@pytest.mark.skipif(
    getattr(os, "geteuid", lambda: -1)() == 0, reason="root writes into a chmod 0o555 folder anyway"
)
def test_a_folder_without_write_permission_is_one_line(tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(CannotWriteError, match=r"no permission to write there"):
            with folder_lock(parent / "run"):
                pass
        with pytest.raises(CannotWriteError, match=r"no permission to write there"):
            with folder_lock(parent):
                pass
    finally:
        parent.chmod(0o755)


# ------------------------------------------------------------------------------ atomic writes
def test_atomic_write_replaces_the_file_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "table.txt"
    atomic_write(path, lambda target: target.write_text("first"))
    assert path.read_text() == "first"

    def failing(target):
        target.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, failing)
    assert path.read_text() == "first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.txt"], "a temporary was left"


def test_write_json_writes_indented_json_with_one_trailing_newline(tmp_path):
    path = write_json(tmp_path / "settings" / "overrides.json", {"a": {"b": False}})
    assert path.read_text() == '{\n "a": {\n  "b": false\n }\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["overrides.json"]


def test_the_module_and_what_only_writes_small_files_need_no_torch():
    """``umlkit.folders`` is standard library only (the module docstring says why), and
    ``python -m umlkit.lab``, which writes one settings file, imports none of torch, numpy and
    pandas."""
    code = (
        "import sys, umlkit.folders, umlkit.lab; "
        "print(sorted({'torch', 'numpy', 'pandas'} & set(sys.modules)))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert imported.strip() == "[]"
