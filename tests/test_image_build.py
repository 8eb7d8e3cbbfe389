"""The image build's bootstrap: a package's maintainer script that fails is tried once
more, anything else is not (the mmdebstrap runs themselves: test_boot, test_kills …)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

from labbuilder.image import build
from labbuilder.model.errors import ToolError
from labbuilder.model.recipe import FileSpec, load_recipe
from labbuilder.reporting import Progress

# The tail of a real failure (gridka-openstack, Debian 12's openstack-dashboard postinst).
POSTINST_FAILED = """Compressing... CommandError: An error occurred during rendering serial_console.html: \
Syntax error: Found 'inline-blo'
dpkg: error processing package openstack-dashboard (--configure):
 installed openstack-dashboard package post-installation script subprocess returned error exit status 1
Errors were encountered while processing:
 openstack-dashboard
 openstack-dashboard-apache
E: Sub-process env returned an error code (1)
E: mmdebstrap failed to run
"""
NOT_FOUND = "E: Unable to locate package nova-compute\nE: mmdebstrap failed to run\n"


class Said(Progress):
    def __init__(self):
        super().__init__()
        self.said = []

    def info(self, text):
        self.said.append(text)


@pytest.fixture
def recipe():
    return load_recipe(REPO / "images" / "gridka-openstack.yaml")


def tries(monkeypatch, outcomes):
    """bootstrap replaced by one that fails with each stderr in `outcomes` (None: passes)."""
    calls = []

    def fake(recipe, rootfs, log):
        calls.append(rootfs)
        err = outcomes[len(calls) - 1]
        if err is not None:
            raise ToolError(["mmdebstrap"], 25, err, str(log))

    monkeypatch.setattr(build, "bootstrap", fake)
    return calls


def test_a_failed_maintainer_script_is_tried_once_more(monkeypatch, tmp_path, recipe):
    calls, progress = tries(monkeypatch, [POSTINST_FAILED, None]), Said()
    build.bootstrap_retrying(recipe, tmp_path / "rootfs", tmp_path / "log", progress)
    assert len(calls) == 2
    assert "openstack-dashboard, openstack-dashboard-apache" in progress.said[0]
    assert str(tmp_path / "log") in progress.said[0]


def test_the_same_failure_twice_is_the_error(monkeypatch, tmp_path, recipe):
    calls = tries(monkeypatch, [POSTINST_FAILED, POSTINST_FAILED])
    with pytest.raises(ToolError, match="exit status 25"):
        build.bootstrap_retrying(recipe, tmp_path / "rootfs", tmp_path / "log", Said())
    assert len(calls) == 2


def test_a_package_apt_cannot_find_is_not_tried_again(monkeypatch, tmp_path, recipe):
    calls, progress = tries(monkeypatch, [NOT_FOUND, None]), Said()
    with pytest.raises(ToolError) as e:
        build.bootstrap_retrying(recipe, tmp_path / "rootfs", tmp_path / "log", progress)
    assert "Unable to locate package nova-compute" in "\n".join(e.value.lines())
    assert len(calls) == 1 and not progress.said


def _hooks(monkeypatch, tmp_path, recipe, kind: str) -> list[str]:
    """The --KIND-hook options that bootstrap gives mmdebstrap for `recipe`, in order
    (nothing is run)."""
    seen = []
    monkeypatch.setattr(build, "run", lambda argv, **kw: seen.append(argv))
    (tmp_path / "work").mkdir(exist_ok=True)
    build.bootstrap(recipe, tmp_path / "work" / "rootfs", tmp_path / "log")
    return [a.split("=", 1)[1] for a in seen[0] if a.startswith(f"--{kind}-hook=")]


def _essential_hook(monkeypatch, tmp_path, recipe) -> str:
    hooks = _hooks(monkeypatch, tmp_path, recipe, "essential")
    assert len(hooks) == 1
    return hooks[0]


def _root_with(root: Path, *programs: str) -> Path:
    """A root directory holding the host's `programs` and the libraries they link (for
    chroot), and /var/run -> /run as Debian has it (an absolute symlink: inside the root only)."""
    for program in programs:
        path = shutil.which(program)
        libs = [w for w in subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout.split()
                if w.startswith("/")]
        for f in [path, *libs]:
            dest = root / f.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
    (root / "run").mkdir()
    (root / "var").mkdir()
    (root / "var" / "run").symlink_to("/run")
    return root


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _run_hook(hook: str, root: Path) -> None:
    """The hook as mmdebstrap runs it: `sh -c HOOK exec ROOT` (the root directory is $1)."""
    subprocess.run(["sh", "-c", hook, "exec", str(root)], check=True)


@pytest.mark.subprocess("sh", "ldd")
def test_a_file_before_the_packages_is_unpacked_by_mmdebstraps_essential_hook(monkeypatch, tmp_path, recipe):
    """The hook puts the file where the dashboard's postinst reads it, with its mode,
    owned by root, and nothing else."""
    hook = _essential_hook(monkeypatch, tmp_path, recipe)
    root = _root_with(tmp_path / "root", "tar")
    had = _files(root)
    _run_hook(hook, root)
    early = [f for f in recipe.files if f.before_packages]
    assert [f.path for f in early] == ["/etc/openstack-dashboard/local_settings.d/_05_pyscss_patterns.py"]
    put = root / early[0].path.lstrip("/")
    assert put.read_text() == early[0].content
    assert (put.stat().st_mode & 0o7777, put.stat().st_uid) == (0o644, 0)
    assert _files(root) - had == {early[0].path.lstrip("/")}


def test_no_hook_without_files_before_the_packages(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(build, "run", lambda argv, **kw: seen.append(argv))
    build.bootstrap(load_recipe(REPO / "images" / "debian-12.yaml"), tmp_path / "rootfs", tmp_path / "log")
    assert not [a for a in seen[0] if a.startswith("--essential-hook")]


@pytest.mark.subprocess("sh", "ldd")
def test_a_file_through_an_absolute_symlink_in_the_root_stays_in_the_root(monkeypatch, tmp_path, recipe):
    """/var/run -> /run in the root: the hook's tar, chrooted, writes the root's /run."""
    name = f"labbuilder-test-{os.getpid()}"
    early = dataclasses.replace(recipe, files=(FileSpec(f"/var/run/{name}", "inside\n", 0o600, True),))
    root = _root_with(tmp_path / "root", "tar")
    _run_hook(_essential_hook(monkeypatch, tmp_path, early), root)
    assert (root / "run" / name).read_text() == "inside\n"
    assert not Path("/run", name).exists()


UNIT = "[Unit]\nDescription=test\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"


@pytest.mark.subprocess("sh", "ldd")
def test_the_customize_hooks_put_fstab_grub_the_files_and_set_the_units_in_the_root(monkeypatch, tmp_path, recipe):
    """Run as mmdebstrap runs them, after the packages: the root's own systemctl (here the
    host's, copied in) enables, masks and disables; files land inside the root."""
    mine = dataclasses.replace(recipe, kernel_cmdline="console=ttyS0 net.ifnames=0",
                               files=(FileSpec("/var/run/mine", "inside\n", 0o600),
                                      FileSpec("/etc/motd", "hello\n", 0o644)),
                               enable=("on.service",), mask=("gone.service",), disable=("off.service",))
    hooks = _hooks(monkeypatch, tmp_path, mine, "customize")
    assert len(hooks) == 4  # the files, then enable, mask, disable
    root = _root_with(tmp_path / "root", "tar", "systemctl")
    units = root / "lib" / "systemd" / "system"
    units.mkdir(parents=True)
    for name in ("on", "gone", "off"):
        (units / f"{name}.service").write_text(UNIT)
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "off.service").symlink_to("/lib/systemd/system/off.service")  # as its package's postinst left it
    for hook in hooks:
        _run_hook(hook, root)
    assert (root / "etc" / "fstab").read_text() == "LABEL=root / ext4 errors=remount-ro 0 1\n"
    assert 'GRUB_CMDLINE_LINUX="console=ttyS0 net.ifnames=0"' in (root / "etc" / "default" / "grub").read_text()
    assert (root / "run" / "mine").read_text() == "inside\n" and not Path("/run/mine").exists()
    assert (root / "etc" / "motd").read_text() == "hello\n"
    assert sorted(p.name for p in wants.iterdir()) == ["on.service"]
    assert os.readlink(root / "etc" / "systemd" / "system" / "gone.service") == "/dev/null"


def test_a_unit_named_like_an_option_is_a_unit_to_systemctl(monkeypatch, tmp_path, recipe):
    hooks = _hooks(monkeypatch, tmp_path, dataclasses.replace(recipe, enable=("--now",)), "customize")
    assert 'chroot "$1" systemctl enable -- --now' in hooks
