"""Opening inputs: only regular files, and never a blocking open or an endless read."""

from __future__ import annotations

import os

import pytest
from hostile_files import within

from tumorseg.errors import InvalidImageError
from tumorseg.io import load_image
from tumorseg.io.files import NotARegularFileError, open_regular


@pytest.fixture
def oddities(tmp_path):
    """A FIFO, a link to an endless device and a folder, each named like an image."""
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "zero.dcm").symlink_to("/dev/zero")
    (tmp_path / "folder.png").mkdir()
    return {"fifo.png": "a FIFO", "zero.dcm": "a character device", "folder.png": None}


def test_only_a_regular_file_is_opened(tmp_path, oddities) -> None:
    (tmp_path / "a.png").write_bytes(b"bytes")
    with open_regular(tmp_path / "a.png") as handle:
        assert handle.read() == b"bytes"
    for name, kind in oddities.items():
        error = within(5, lambda name=name: open_regular(tmp_path / name))
        if kind is None:  # a folder: the standard error for it
            assert isinstance(error, IsADirectoryError)
            continue
        assert isinstance(error, NotARegularFileError) and error.kind == kind
        assert f"is {kind}, not a regular file" in str(error)
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing.png")


def test_decoding_refuses_them_at_once_by_kind(tmp_path, oddities) -> None:
    for name, kind in oddities.items():
        error = within(5, lambda name=name: load_image(tmp_path / name))
        assert isinstance(error, InvalidImageError)
        expected = "is a directory" if kind is None else f"not a regular file ({kind})"
        assert expected in str(error)
