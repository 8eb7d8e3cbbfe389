"""Fixtures shared by the test suite."""

from __future__ import annotations

import os
import shutil

import pytest

from labbuilder import privatelibvirtd


@pytest.fixture(scope="session")
def private_libvirtd(tmp_path_factory):
    """A private libvirtd in its own mount and network namespace, for the whole session."""
    if os.geteuid() != 0:
        pytest.skip("a private libvirtd needs root (unshare, mounts, bridges)")
    if shutil.which("libvirtd") is None:
        pytest.skip("libvirtd is not installed")
    daemon = privatelibvirtd.start(tmp_path_factory.mktemp("libvirtd"))
    yield daemon
    privatelibvirtd.stop(daemon)
