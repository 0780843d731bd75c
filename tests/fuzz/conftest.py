"""Shared by the fuzzers: a module-wide scratch directory and a fast in-place file writer."""
import os

import pytest


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def put():
    """``put(path, data)`` writes ``data`` over the file at ``path`` in place.

    Ten thousand examples rewrite one file each: opening it with O_TRUNC frees and reallocates its
    blocks every time, which on some filesystems (ext4 mounted with ``discard``) costs a
    millisecond; writing over it and truncating to the new length does not.
    """
    def write(path, data: bytes):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
    return write
