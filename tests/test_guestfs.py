"""make_bootable_disk's one retry: only grub-install's cross-disk flake gets a new appliance."""

import pytest

from labbuilder.model.errors import ToolError
from labbuilder.system import guestfs

SIZE = 1 << 30


def _failing(messages):
    calls = []

    def make_disk(rootfs, disk, size_bytes, force_tcg, step, log):
        calls.append(disk.exists())
        disk.write_bytes(b"half-made")
        if messages:
            raise ToolError(["libguestfs", str(disk)], 1, messages.pop(0))

    return make_disk, calls


def test_the_grub_cross_disk_flake_is_built_again_in_a_new_appliance(tmp_path, monkeypatch):
    flake = "grub-install: error: embedding is not possible, but this is required for cross-disk install."
    make_disk, calls = _failing([flake])
    monkeypatch.setattr(guestfs, "_make_disk", make_disk)
    steps = []
    guestfs.make_bootable_disk(tmp_path / "rootfs", tmp_path / "disk.raw", SIZE, force_tcg=True, step=steps.append)
    assert calls == [False, False]  # the half-made disk was removed before the second try
    assert steps == ["grub-install took the wrong disk; once more in a new appliance"]


@pytest.mark.parametrize("messages", [["mkfs: no space left"], [
    "required for cross-disk install", "required for cross-disk install"]])
def test_other_failures_and_a_second_flake_are_errors(tmp_path, monkeypatch, messages):
    make_disk, calls = _failing(list(messages))
    monkeypatch.setattr(guestfs, "_make_disk", make_disk)
    with pytest.raises(ToolError, match="libguestfs failed"):
        guestfs.make_bootable_disk(tmp_path / "rootfs", tmp_path / "disk.raw", SIZE, force_tcg=True)
    assert len(calls) == len(messages)
