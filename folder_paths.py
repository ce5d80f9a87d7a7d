"""Where the service's files live.

The base path is taken from the ``DIGITS_BASE_PATH`` environment variable and
falls back to the folder holding this file, never the current working
directory, so the service behaves the same wherever it is started from.
Every other module asks this one for paths instead of building them.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_PATH_ENV = "DIGITS_BASE_PATH"

FOLDER_NAMES = ("weights", "templates", "static", "tests")


def base_path() -> Path:
    """The project's base folder: ``$DIGITS_BASE_PATH`` or this file's folder."""
    configured = os.environ.get(BASE_PATH_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(__file__).resolve().parent


def get_folder(folder: str) -> Path:
    """The absolute path of one of the named folders in ``FOLDER_NAMES``."""
    if folder not in FOLDER_NAMES:
        raise KeyError(f"unknown folder {folder!r}; known folders: {', '.join(FOLDER_NAMES)}")
    return base_path() / folder


def get_full_path(folder: str, name: str | os.PathLike[str]) -> Path:
    """The path of ``name`` inside ``folder``, refusing any name that escapes it.

    Absolute names, ``..`` components and symbolic links that lead outside the
    folder all raise ``ValueError``.
    """
    root = get_folder(folder).resolve()
    name = os.fspath(name)
    if not name or os.path.isabs(name):
        raise ValueError(f"{name!r} is not a relative file name inside {folder}/")
    candidate = (root / name).resolve()
    if not candidate.is_relative_to(root) or candidate == root:
        raise ValueError(f"{name!r} escapes the {folder}/ folder")
    return candidate


def shared_data_path(name: str) -> Path:
    """A data file in the ``shared/data`` folder beside the project (not in the repository)."""
    return base_path().parent / "shared" / "data" / name
