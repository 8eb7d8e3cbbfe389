"""Fixtures shared by the test suite."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from labbuilder.system import privatelibvirtd


@pytest.fixture(scope="session", autouse=True)
def lab_state():
    """labbuilder's state directory for this session ($LABBUILDER_STATE), so every
    `labbuilder` run in the tests finds the session's private libvirtd there. Not under
    pytest's basetemp: another pytest run may rotate that away while VMs use it."""
    root = Path(tempfile.mkdtemp(prefix="lbtest-"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABBUILDER_STATE", str(root))
        yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def private_libvirtd(lab_state):
    """A private libvirtd in its own mount and network namespace, for the whole session,
    at the place `labbuilder --private` looks for it."""
    if os.geteuid() != 0:
        pytest.skip("a private libvirtd needs root (unshare, mounts, bridges)")
    if shutil.which("libvirtd") is None:
        pytest.skip("libvirtd is not installed")
    daemon = privatelibvirtd.start(lab_state / "libvirtd")
    yield daemon
    privatelibvirtd.stop(daemon)


REPO = Path(__file__).resolve().parent.parent

# libvirt's test driver reads a host from a file: one running domain, `test`, and nothing
# else (no `default` network: a topology's subnets clash with nothing there).
TEST_HOST = """<node>
  <domain type="test">
    <name>test</name>
    <memory>8388608</memory>
    <vcpu>2</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
"""


@pytest.fixture
def test_host(tmp_path) -> str:
    """The URI of a fresh in-memory libvirt host of this test's own (`test://FILE`): every
    connection to it starts from TEST_HOST. `test:///default` is one host shared by every
    test in the process, so what one test changed there another would see."""
    driver = tmp_path / "test-host.xml"
    driver.write_text(TEST_HOST)
    return f"test://{driver}"


def _built_image(name: str):
    """images/NAME.yaml built by our own pipeline (cached: instant once built)."""
    from labbuilder import progress
    from labbuilder.image import build as image
    from labbuilder.model import recipe

    rec = recipe.load_recipe(REPO / "images" / f"{name}.yaml")
    return image.build(rec, image.default_cache_dir(), progress.Progress())


@pytest.fixture(scope="session")
def base_image():
    """The debian-12 base image."""
    return _built_image("debian-12")


@pytest.fixture(scope="session")
def gridka_image():
    """The gridka-base image (debian-12 + the course's Debian packages, extends debian-12)."""
    return _built_image("gridka-base")


GOLDEN = Path(__file__).parent / "golden"


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true",
                     help="rewrite tests/golden/* from what the code produces now (refused when CI is set)")


def pytest_configure(config):
    """In CI a golden file is a fixed expectation: rewriting it would pass any change."""
    asked = config.getoption("--regen-golden") or os.environ.get("LABBUILDER_REGEN_GOLDEN")
    if asked and os.environ.get("CI"):
        raise pytest.UsageError("golden files are not rewritten in CI (CI is set): "
                                "regenerate them with --regen-golden on a work machine and commit them")


@pytest.fixture
def golden(request):
    """Compare text with tests/golden/NAME (rewritten with --regen-golden; a missing one
    written with LABBUILDER_REGEN_GOLDEN=1; neither when CI is set)."""
    regen = request.config.getoption("--regen-golden")

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if regen or not path.exists() and os.environ.get("LABBUILDER_REGEN_GOLDEN"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"no golden file {path}: run pytest --regen-golden"
        assert text == path.read_text()

    return check
