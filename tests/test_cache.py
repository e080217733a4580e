"""umlkit.cache: export the trained models of one checkout, import them into another.

Both "checkouts" are temporary folders (:class:`umlkit.cache.CacheFolders`): the lecturer's,
where a tiny model is trained once, and each student's, where the archive is imported. The real
``data/`` is never touched.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

import umlkit.semi.loop as semi_module
import umlkit.train as train_module
from umlkit.cache import CacheFolders, export_cache, import_cache
from umlkit.cache.archives import SECTIONS, versions
from umlkit.cli import main
from umlkit.data import load_dataset, make_synthetic
from umlkit.data.base import SegmentationClassificationDataset
from umlkit.semi.loop import SemiConfig, get_or_train_semi, semi_config_hash
from umlkit.train import TrainConfig, get_or_train


def folders_in(base: Path) -> CacheFolders:
    """A checkout's folders under ``base`` (nothing created yet)."""
    cache = base / "data" / "cache"
    return CacheFolders(
        models=cache / "models",
        semi=cache / "semi",
        arrays=cache / "arrays",
        synthetic=base / "data" / "synthetic",
    )


def all_files(folders: CacheFolders) -> dict[str, bytes]:
    """Every file of a checkout's folders, by path relative to its ``data`` folder."""
    data = folders.synthetic.parent
    return {
        path.relative_to(data).as_posix(): path.read_bytes()
        for path in sorted(data.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def lecturer(tmp_path_factory):
    """A checkout with one finished one-epoch run on the smoke profile's derm data, a stale
    copy of it (under a hash no configuration has), and its archive."""
    base = tmp_path_factory.mktemp("lecturer")
    folders = folders_in(base)
    root = make_synthetic(
        folders.synthetic / "derm-smoke", kind="derm", n=24, size=32, progress=False
    )
    config = TrainConfig(
        model="uml",
        width=4,
        data_root=str(root),
        image_size=16,
        epochs=1,
        batch_size=8,
        device="cpu",
        array_cache=str(folders.arrays),
    )
    trained = get_or_train(config, cache_dir=folders.models, progress=False)
    assert not trained.from_cache
    fundus = make_synthetic(
        folders.synthetic / "fundus-smoke", kind="fundus", n=24, size=32, progress=False
    )
    semi = SemiConfig(
        method="supervised",
        data_root=str(fundus),
        label_fraction=0.5,
        image_size=16,
        width=4,
        epochs=1,
        device="cpu",
        array_cache=str(folders.arrays),
    )
    assert not get_or_train_semi(semi, cache_dir=folders.semi, progress=False).from_cache
    shutil.copytree(trained.output_dir, folders.models / "0123456789abcdef")
    archive, lines = base / "lab.tar.gz", []
    manifest = export_cache(archive, "smoke", folders=folders, progress=False, log=lines.append)
    return SimpleNamespace(
        folders=folders, config=config, semi=semi, archive=archive, manifest=manifest, lines=lines
    )


def no_training(*args, **kwargs):
    raise AssertionError("trained although the run was imported")


def test_manifest_lists_the_finished_run_its_data_and_versions(lecturer):
    manifest = lecturer.manifest
    assert {key: manifest[key] for key in versions()} == versions()
    assert manifest["profile"] == "smoke"
    assert [(run["section"], run["dataset"]) for run in manifest["runs"]] == [
        ("models", "derm-smoke"),
        ("semi", "fundus-smoke"),
    ]
    assert manifest["runs"][0]["hash"] == train_module.config_hash(lecturer.config)
    assert manifest["runs"][1]["hash"] == semi_config_hash(lecturer.semi)
    assert [entry["name"] for entry in manifest["datasets"]] == ["derm-smoke", "fundus-smoke"]
    assert {entry["split"] for entry in manifest["arrays"]} >= {"train", "val"}
    assert "1 stale" in lecturer.lines[-1]  # the copy under a made-up hash is left out
    with tarfile.open(lecturer.archive) as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json"
    assert not any(name.startswith("models/0123456789abcdef") for name in names)


@pytest.mark.parametrize("ending", ["tar.gz", "zip"])
def test_round_trip_loads_every_model_without_training(lecturer, tmp_path, monkeypatch, ending):
    archive = lecturer.archive
    if ending == "zip":
        archive = tmp_path / "lab.zip"
        export_cache(archive, "smoke", folders=lecturer.folders, progress=False, log=print)
    student = folders_in(tmp_path / "student")
    lines = []
    report = import_cache(archive, folders=student, progress=False, log=lines.append)
    assert report.runs == {"models": 1, "semi": 1}
    assert report.datasets == ["derm-smoke", "fundus-smoke"]
    assert report.arrays == len(lecturer.manifest["arrays"]) and report.unchanged == 0
    assert lines[0].startswith(f"imported {archive.name}: 1 supervised and 1 semi-supervised")

    monkeypatch.setattr(train_module, "train", no_training)
    monkeypatch.setattr(semi_module, "fit_semi", no_training)
    root = student.synthetic / "derm-smoke"
    config = replace(lecturer.config, data_root=str(root), array_cache=str(student.arrays))
    result = get_or_train(config, cache_dir=student.models, progress=False)
    assert result.from_cache and result.output_dir.parent == student.models
    semi = replace(
        lecturer.semi,
        data_root=str(student.synthetic / "fundus-smoke"),
        array_cache=str(student.arrays),
    )
    assert get_or_train_semi(semi, cache_dir=student.semi, progress=False).from_cache

    # The decoded splits carry this checkout's names: loading them decodes no image.
    monkeypatch.setattr(SegmentationClassificationDataset, "_load", no_training)
    stored = sorted(student.arrays.iterdir())
    for split in ("train", "val"):
        dataset = load_dataset("derm", root, split=split, size=16, cache=student.arrays)
        assert dataset[0]["image"].shape == (3, 16, 16)
    assert sorted(student.arrays.iterdir()) == stored


def test_importing_twice_changes_nothing(lecturer, tmp_path):
    student = folders_in(tmp_path)
    import_cache(lecturer.archive, folders=student, progress=False, log=print)
    before = all_files(student)
    again = import_cache(lecturer.archive, folders=student, progress=False, log=print)
    assert again.written == 0 and again.unchanged > 0
    assert all_files(student) == before


def test_a_different_file_is_refused_then_replaced_with_overwrite(lecturer, tmp_path):
    student = folders_in(tmp_path)
    import_cache(lecturer.archive, folders=student, progress=False, log=print)
    history = next(student.models.glob("*/history.csv"))
    history.write_text("epoch\n0\n")
    extra = student.synthetic / "derm-smoke" / "notes.txt"
    extra.write_text("mine")
    with pytest.raises(FileExistsError) as refused:
        import_cache(lecturer.archive, folders=student, progress=False, log=print)
    message = str(refused.value)
    assert "\n" not in message and str(history) in message and "--overwrite" in message
    assert "1 dataset file(s) here are not in the archive" in message
    assert history.read_text() == "epoch\n0\n"  # nothing was written
    report = import_cache(
        lecturer.archive, overwrite=True, folders=student, progress=False, log=print
    )
    assert report.removed == [str(extra)] and not extra.exists()
    assert history.read_text() != "epoch\n0\n"


def write_tar(path: Path, manifest: dict, members: dict[str, bytes]) -> Path:
    """A .tar.gz with ``manifest.json`` first, then ``members`` (name -> bytes)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {"manifest.json": json.dumps(manifest).encode(), **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def one_line_error(error_type, archive, folders, match):
    with pytest.raises(error_type, match=match) as raised:
        import_cache(archive, folders=folders, progress=False, log=print)
    assert "\n" not in str(raised.value) and str(archive) in str(raised.value)


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        ("../evil.txt", "a path with '..'"),
        ("synthetic/derm-smoke/../../../evil.txt", "a path with '..'"),
        ("/tmp/evil.txt", "an absolute path"),
        ("notes/evil.txt", "outside the archive's folders"),
    ],
)
def test_a_member_leaving_the_data_folder_is_refused(lecturer, tmp_path, member, problem):
    archive = write_tar(tmp_path / "evil.tar.gz", lecturer.manifest, {member: b"x"})
    student = folders_in(tmp_path / "student")
    one_line_error(ValueError, archive, student, f"member {member!r} is {problem}")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "student").exists()


def test_links_and_absolute_zip_members_are_refused(lecturer, tmp_path):
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = json.dumps(lecturer.manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("synthetic/derm-smoke/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    one_line_error(ValueError, archive, folders_in(tmp_path), "is a link or special file")
    zipped = tmp_path / "absolute.zip"
    with zipfile.ZipFile(zipped, "w") as store:
        store.writestr("manifest.json", json.dumps(lecturer.manifest))
        store.writestr("/etc/evil", "x")
    one_line_error(ValueError, zipped, folders_in(tmp_path), "is an absolute path")


def test_an_archive_of_another_revision_is_refused_in_one_line(lecturer, tmp_path):
    older = {**lecturer.manifest, "training_revision": lecturer.manifest["training_revision"] - 1}
    archive = write_tar(tmp_path / "old.tar.gz", older, {})
    one_line_error(
        ValueError, archive, folders_in(tmp_path), "training revision .* export it again"
    )


def test_missing_damaged_and_foreign_files_are_one_line(lecturer, tmp_path):
    folders = folders_in(tmp_path)
    one_line_error(FileNotFoundError, tmp_path / "nowhere.tar.gz", folders, "not found")
    text = tmp_path / "lab.tar.gz"
    text.write_text("not an archive")
    one_line_error(ValueError, text, folders, "is not a .tar.gz or .zip archive")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(lecturer.archive.read_bytes()[:2000])
    one_line_error(ValueError, truncated, folders, "damaged|not a umlkit cache archive")
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as store:
        store.writestr("readme.txt", "hello")
    one_line_error(ValueError, foreign, folders, "not a umlkit cache archive")


def test_export_refuses_an_existing_file_a_bad_name_and_an_empty_cache(lecturer, tmp_path):
    with pytest.raises(FileExistsError, match="exists"):
        export_cache(lecturer.archive, folders=lecturer.folders, progress=False)
    with pytest.raises(ValueError, match=r"ends in \.tar\.gz, \.tgz or \.zip"):
        export_cache(tmp_path / "lab.rar", folders=lecturer.folders, progress=False)
    with pytest.raises(ValueError, match="no finished runs of profile default in .*: nothing"):
        export_cache(tmp_path / "lab.zip", "default", folders=lecturer.folders, progress=False)
    assert not (tmp_path / "lab.zip").exists()
    # a cache whose only run is stale says why it was left out
    stale = folders_in(tmp_path / "stale")
    shutil.copytree(lecturer.folders.synthetic, stale.synthetic)
    shutil.copytree(lecturer.folders.models / "0123456789abcdef", stale.models / "0123456789abcdef")
    message = (
        r"no finished runs in .*; 1 run folder\(s\) left out: 1 stale \(older code, or its data "
        r"changed since\): nothing to export"
    )
    with pytest.raises(ValueError, match=message):
        export_cache(tmp_path / "lab.zip", folders=stale, progress=False)


def test_the_command_line_exports_and_imports(lecturer, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(CacheFolders, "of_checkout", classmethod(lambda cls: lecturer.folders))
    archive = tmp_path / "cli.tgz"
    assert main(["cache", "export", str(archive), "--profile", "smoke"]) == 0
    assert "exported 1 supervised and 1 semi-supervised runs" in capsys.readouterr().out
    student = folders_in(tmp_path / "student")
    monkeypatch.setattr(CacheFolders, "of_checkout", classmethod(lambda cls: student))
    assert main(["cache", "import", str(archive)]) == 0
    assert "imported cli.tgz" in capsys.readouterr().out
    assert main(["cache", "import", str(tmp_path / "nowhere.zip")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("umlkit cache: cache archive")


# ------------------------------------------- the lab path: a real notebook after an import

ROOT = Path(__file__).resolve().parents[1]


def new_checkout(base: Path) -> Path:
    """A clone as far as notebook 03 needs one: the project marker (``pyproject.toml`` beside
    ``umlkit/``, which :func:`umlkit.runtime.project_root` looks for), the notebook and the smoke
    parameter set; ``data/`` and ``build/`` start empty."""
    (base / "notebooks" / "params").mkdir(parents=True)
    shutil.copy2(ROOT / "pyproject.toml", base / "pyproject.toml")
    (base / "umlkit").symlink_to(ROOT / "umlkit", target_is_directory=True)
    shutil.copy2(ROOT / "notebooks" / "03_training.ipynb", base / "notebooks")
    shutil.copy2(ROOT / "notebooks" / "params" / "smoke.yaml", base / "notebooks" / "params")
    return base


def run_notebook_03(checkout: Path) -> str:
    """``umlkit figures --profile smoke --only 03`` in ``checkout``; what its cells printed."""
    import nbformat

    assert main(["figures", "--profile", "smoke", "--only", "03"]) == 0
    executed = nbformat.read(checkout / "build" / "notebooks-smoke" / "03_training.ipynb", 4)
    return "".join(
        output.get("text", "")
        for cell in executed.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


def stamps(folders: CacheFolders) -> dict[str, tuple[int, bytes]]:
    """Every file of the folders an archive fills (runs, datasets, decoded splits): its
    modification time (ns) and bytes, by path."""
    return {
        str(path): (path.stat().st_mtime_ns, path.read_bytes())
        for section in SECTIONS
        for path in sorted(folders.section(section).rglob("*"))
        if path.is_file()
    }


def test_notebook_03_runs_without_training_after_an_import(tmp_path, monkeypatch):
    """The lab path end to end, with the commands a lecturer and a student type: the lecturer
    runs notebook 03 (it generates the smoke data and trains) and exports the cache; a fresh
    clone imports the archive and runs the same notebook, which loads its model: not one file of
    the runs, datasets or decoded splits is added, removed or written again.

    Cost: two smoke-profile runs of one notebook, the first training for two epochs, the second
    loading; about 55 s of CPU time in all (the machine otherwise idle, that is about a minute of
    one `make test` worker). The other notebooks find their runs the same way, by the hash of
    their configuration, which the round-trip tests above check for both training loops.
    """
    # Each checkout keeps its decoded splits in its own data/cache/arrays, as a clone does.
    monkeypatch.delenv("UMLKIT_ARRAY_CACHE", raising=False)
    lecturer = new_checkout(tmp_path / "lecturer")
    monkeypatch.chdir(lecturer)
    printed = run_notebook_03(lecturer)
    assert "seed 0: trained" in printed, printed
    archive = tmp_path / "lab.tar.gz"
    assert main(["cache", "export", str(archive), "--profile", "smoke"]) == 0

    student = new_checkout(tmp_path / "student")
    monkeypatch.chdir(student)
    assert main(["cache", "import", str(archive)]) == 0
    folders = folders_in(student)
    imported = stamps(folders)
    assert any(Path(name).parent.parent == folders.models for name in imported)
    printed = run_notebook_03(student)
    assert "seed 0: loaded from the cache" in printed, printed
    after = stamps(folders)
    assert sorted(after) == sorted(imported), "files added to or removed from the cache"
    changed = [name for name in imported if after[name] != imported[name]]
    assert not changed, f"rewritten after the import: {changed[:5]}"
