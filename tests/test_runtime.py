"""The runtime helpers: project root, seeding, device choice, torch.compile's kernel cache."""

import getpass
import os
import tempfile

import pytest
import torch
from torch import nn

from umlkit.runtime import (
    compile_model,
    pick_device,
    project_root,
    seed_everything,
    separate_compile_cache,
)


def test_project_root_found_from_a_subfolder():
    root = project_root()
    assert project_root(root / "notebooks") == root
    assert (root / "pyproject.toml").is_file()


def test_seeding_repeats_random_numbers():
    seed_everything(3)
    first = torch.rand(3)
    seed_everything(3)
    assert torch.equal(first, torch.rand(3))


def test_pick_device_refuses_an_absent_gpu():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")
    assert pick_device() in {"cpu", "mps"}


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cpu:0", "gpu"])
def test_pick_device_names_the_valid_devices(name):
    with pytest.raises(ValueError) as caught:
        pick_device(name, what="--device")
    message = str(caught.value)
    assert message.startswith(f"--device {name!r} is not a device umlkit can use")
    assert "choose cpu, cuda, cuda:<n> or mps" in message and "available here: cpu" in message
    assert "\n" not in message


def test_pick_device_accepts_the_devices_it_lists():
    assert pick_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="TrainConfig.device 'cuda:1' requested but CUDA"):
            pick_device("cuda:1", what="TrainConfig.device")


# ------------------------------------------------------------------ torch.compile's kernel cache
@pytest.fixture
def temporary_tmpdir(tmp_path, monkeypatch):
    """``tempfile.gettempdir()`` (where torch and umlkit put the kernel caches) is ``tmp_path``."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_capability_set_by_hand_gets_a_cache_folder_of_its_own(temporary_tmpdir):
    shared = temporary_tmpdir / f"torchinductor_{getpass.getuser()}"
    environ = {"ATEN_CPU_CAPABILITY": "AVX2"}
    assert separate_compile_cache(environ) == f"{shared}_avx2"
    assert environ["TORCHINDUCTOR_CACHE_DIR"] == f"{shared}_avx2"
    # torch writes its own default into the variable on its first compilation: replaced too
    environ = {"ATEN_CPU_CAPABILITY": "default", "TORCHINDUCTOR_CACHE_DIR": str(shared)}
    assert separate_compile_cache(environ) == f"{shared}_default"


def test_the_shared_folder_is_the_one_torch_uses_by_default(temporary_tmpdir):
    """Written out from torch's own rule: if torch moves its default cache, this fails (and
    separate_compile_cache would no longer recognise the default it must replace)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    environ = {"ATEN_CPU_CAPABILITY": "avx2", "TORCHINDUCTOR_CACHE_DIR": default_cache_dir()}
    assert separate_compile_cache(environ) == default_cache_dir() + "_avx2"


def _no_login_name():
    raise ModuleNotFoundError("No module named 'pwd'")  # getpass on Windows without USERNAME


@pytest.mark.parametrize(
    "getuser, has_getuid, expected",
    [
        (lambda: "DOM\\ann", True, "torchinductor_DOM_ann"),  # a Windows domain login
        (lambda: 'a/b:c*d?e"f<g>h|i', True, "torchinductor_a_b_c_d_e_f_g_h_i"),
        (_no_login_name, True, "torchinductor_uid_1234"),
        (_no_login_name, False, "torchinductor_unknown_user"),
    ],
    ids=["domain", "every-replaced-character", "uid-without-a-name", "neither"],
)
def test_user_names_follow_torch_s_rule(
    getuser, has_getuid, expected, temporary_tmpdir, monkeypatch
):
    """Hand-written folder names, and torch's own ``default_cache_dir()`` under the same user:
    where the two differed, torch's default would not be recognised and replaced, and a run
    under another capability would share its cache again."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setattr(getpass, "getuser", getuser)
    if has_getuid:
        monkeypatch.setattr(os, "getuid", lambda: 1234, raising=False)
    else:
        monkeypatch.delattr(os, "getuid", raising=False)
    shared = str(temporary_tmpdir / expected)
    assert default_cache_dir() == shared
    environ = {"ATEN_CPU_CAPABILITY": "avx2", "TORCHINDUCTOR_CACHE_DIR": shared}
    assert separate_compile_cache(environ) == shared + "_avx2"


def test_a_cache_folder_of_someone_s_choosing_is_kept(temporary_tmpdir):
    environ = {"ATEN_CPU_CAPABILITY": "avx2", "TORCHINDUCTOR_CACHE_DIR": "/data/kernels"}
    assert separate_compile_cache(environ) is None
    assert environ == {"ATEN_CPU_CAPABILITY": "avx2", "TORCHINDUCTOR_CACHE_DIR": "/data/kernels"}


@pytest.mark.parametrize("environ", [{}, {"ATEN_CPU_CAPABILITY": ""}, {"ATEN_CPU_CAPABILITY": " "}])
def test_without_a_capability_nothing_changes(environ, temporary_tmpdir):
    before = dict(environ)
    assert separate_compile_cache(environ) is None
    assert environ == before


def test_compile_model_points_torch_at_the_capability_s_cache(temporary_tmpdir, monkeypatch):
    """What a run under ``ATEN_CPU_CAPABILITY=avx2`` compiles lands in the avx2 folder: torch's
    own ``cache_dir()`` reads it (no compilation needed: the model compiles on its first call)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    model = nn.Linear(3, 2)
    compiled = compile_model(model)
    expected = str(temporary_tmpdir / f"torchinductor_{getpass.getuser()}_avx2")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == expected
    assert cache_dir() == expected
    assert compiled.weight is model.weight  # the same parameters, not a copy
