import subprocess
import sys
from pathlib import Path

import pytest

import folder_paths

PROJECT = Path(folder_paths.__file__).resolve().parent


def test_base_path_falls_back_to_the_modules_folder(monkeypatch):
    monkeypatch.delenv(folder_paths.BASE_PATH_ENV, raising=False)
    assert folder_paths.base_path() == PROJECT


def test_base_path_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    assert folder_paths.base_path() == tmp_path.resolve()
    assert folder_paths.get_folder("weights") == tmp_path.resolve() / "weights"


def test_base_path_does_not_depend_on_the_working_directory(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT)}
    out = subprocess.run(
        [sys.executable, "-c", "import folder_paths; print(folder_paths.base_path())"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )
    assert Path(out.stdout.strip()) == PROJECT


def test_every_folder_is_named_under_the_base():
    for name in folder_paths.FOLDER_NAMES:
        assert folder_paths.get_folder(name).parent == folder_paths.base_path()
    with pytest.raises(KeyError):
        folder_paths.get_folder("elsewhere")


def test_full_path_inside_the_folder():
    path = folder_paths.get_full_path("weights", "model.pt")
    assert path == PROJECT / "weights" / "model.pt"
    assert folder_paths.get_full_path("tests", "fixtures/heldout_digits.npz").is_file()


@pytest.mark.parametrize("name", ["../app.py", "a/../../app.py", "/etc/passwd", "", ".", "..",
                                  "weights/../../x"])
def test_full_path_refuses_names_that_escape(name):
    with pytest.raises(ValueError):
        folder_paths.get_full_path("weights", name)


def test_full_path_refuses_a_symlink_that_leads_out(monkeypatch, tmp_path):
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    (tmp_path / "weights").mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "weights" / "link.pt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(ValueError):
        folder_paths.get_full_path("weights", "link.pt")
