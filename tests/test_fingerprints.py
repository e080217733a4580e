"""umlkit.fingerprints: a dataset's fingerprint sees every byte, ignores file times, and an
unchanged dataset is not read again."""

import os
import shutil

import pytest

from umlkit import fingerprints
from umlkit.fingerprints import dataset_fingerprint, fingerprint_files


def write_dataset(root):
    """A small dataset folder: a label table, an image-like binary file and a nested mask."""
    (root / "masks").mkdir(parents=True)
    (root / "labels.csv").write_text("id,label\na,1.0\nb,0.0\n")
    (root / "a.png").write_bytes(bytes(range(256)) * 4)
    (root / "masks" / "a.png").write_bytes(b"\x00" * 64)
    return root


def rewrite_keeping_size_and_mtime(path, content):
    """Write ``content`` (of the file's size) into ``path`` and put its modification time back."""
    stat = path.stat()
    assert len(content) == stat.st_size
    path.write_bytes(content)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_dataset_fingerprint_sees_every_byte_and_ignores_times(tmp_path):
    root, cache = write_dataset(tmp_path / "data"), tmp_path / "cache"
    first = dataset_fingerprint(root, cache)
    assert len(first) == 16 and dataset_fingerprint(root, cache) == first
    # labels swapped: same size, same modification time
    rewrite_keeping_size_and_mtime(root / "labels.csv", b"id,label\na,0.0\nb,1.0\n")
    swapped = dataset_fingerprint(root, cache)
    assert swapped != first
    # one byte of an image edited in place, its size and modification time put back
    image = bytearray((root / "a.png").read_bytes())
    image[100] ^= 0xFF
    rewrite_keeping_size_and_mtime(root / "a.png", bytes(image))
    edited = dataset_fingerprint(root, cache)
    assert edited != swapped
    # times alone are not content: a touched file, or a copy elsewhere, keeps the fingerprint
    os.utime(root / "masks" / "a.png", ns=(0, 10**18))
    assert dataset_fingerprint(root, cache) == edited
    copy = shutil.copytree(root, tmp_path / "elsewhere" / "data")
    assert dataset_fingerprint(copy, cache) == edited
    # Finder's folder settings and AppleDouble files are no data; any other new file is
    (root / ".DS_Store").write_bytes(b"view settings")
    (root / "masks" / "._a.png").write_bytes(b"attributes of a.png")
    assert dataset_fingerprint(root, cache) == edited
    (root / "masks" / "b.png").write_bytes(b"")
    assert dataset_fingerprint(root, cache) != edited


def count_reads(monkeypatch):
    """The files :func:`file_digest` reads from now on, in a list that grows."""
    reads = []
    digest = fingerprints.file_digest
    monkeypatch.setattr(
        fingerprints, "file_digest", lambda path: reads.append(path) or digest(path)
    )
    return reads


def test_an_unchanged_dataset_is_not_read_again(tmp_path, monkeypatch):
    root, cache = write_dataset(tmp_path / "data"), tmp_path / "cache"
    monkeypatch.setattr(fingerprints, "SETTLED_NS", -(10**12))  # every file counts as settled
    reads = count_reads(monkeypatch)
    fingerprint, files = fingerprint_files(root, cache)
    assert files == 3 and len(reads) == 3
    assert fingerprint_files(root, cache) == (fingerprint, 3)
    assert len(reads) == 3  # the digests came from the cache file
    assert [p.suffix for p in cache.iterdir()] == [".json"]
    (root / "labels.csv").write_text("id,label\na,0\nb,1\n")
    assert fingerprint_files(root, cache)[0] != fingerprint
    assert reads[3:] == [root / "labels.csv"]  # only the rewritten file was read
    # a damaged cache file is only a slower fingerprint, never a wrong one
    next(cache.iterdir()).write_text("{not json")
    assert fingerprint_files(root, cache)[0] == dataset_fingerprint(root, tmp_path / "fresh")


def test_a_file_changed_moments_ago_is_read_again_until_it_settles(tmp_path, monkeypatch):
    # A second write within one tick of the file system's clock could keep the change time, so
    # a file written in the last two seconds is not trusted to the cache.
    root, cache = write_dataset(tmp_path / "data"), tmp_path / "cache"
    reads = count_reads(monkeypatch)
    monkeypatch.setattr(fingerprints, "SETTLED_NS", 10**12)  # "just now": the last 1000 s
    fingerprint = dataset_fingerprint(root, cache)
    assert dataset_fingerprint(root, cache) == fingerprint
    assert len(reads) == 6  # written just now: read both times
    monkeypatch.setattr(fingerprints, "SETTLED_NS", -(10**12))  # as if minutes had passed
    dataset_fingerprint(root, cache)
    dataset_fingerprint(root, cache)
    assert len(reads) == 9  # read once more, then cached


def test_dataset_fingerprint_names_an_unreadable_file(tmp_path, monkeypatch):
    root = write_dataset(tmp_path / "data")

    def refused(path):  # what reading a file without permission raises (root reads any file)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(fingerprints, "file_digest", refused)
    with pytest.raises(ValueError) as caught:
        dataset_fingerprint(root, tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith(f"cannot fingerprint the dataset {root}: {root / 'a.png'}")
    assert "Permission denied" in message and "\n" not in message
