"""The one module that opens a libguestfs handle: turns a bootstrapped root directory into a
bootable disk (the filesystem made on the host by system/mkfs, the MBR and GRUB in the
appliance)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import guestfs  # Debian's python3-guestfs

from labbuilder.model.errors import ToolError
from labbuilder.model.recipe import FileSpec
from labbuilder.system import mkfs
from labbuilder.system.run import once_more_on

# The root filesystem's label: /etc/fstab and GRUB find the root by it.
FS_LABEL = "root"


def _handle(force_tcg: bool):
    g = guestfs.GuestFS(python_return_dict=True)
    g.set_backend("direct")  # no system libvirtd is assumed to run
    if force_tcg:
        g.set_backend_settings(["force_tcg"])
    return g


def _root_disk(g) -> str:
    """The whole-disk device holding '/', found from the mounts (the appliance's own disk
    can take the name /dev/sda, so never assume it)."""
    root = next(dev for dev, mp in g.mountpoints().items() if mp == "/")
    return g.part_to_dev(root)


def boot_files(kernel_cmdline: str) -> list[FileSpec]:
    """/etc/fstab and GRUB's defaults for a root on the FS_LABEL filesystem, booting with
    `kernel_cmdline`: written into the root before its filesystem is made."""
    grub = ("GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_DISTRIBUTOR=Debian\n"
            f'GRUB_CMDLINE_LINUX_DEFAULT=""\nGRUB_CMDLINE_LINUX="{kernel_cmdline}"\n'
            "GRUB_TERMINAL=\"console serial\"\nGRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n"
            "GRUB_DISABLE_OS_PROBER=true\n")
    return [FileSpec("/etc/fstab", f"LABEL={FS_LABEL} / ext4 errors=remount-ro 0 1\n", 0o644),
            FileSpec("/etc/default/grub", grub, 0o644)]


# grub-install in the appliance now and then takes the partition for another disk
# ("embedding is not possible, but this is required for cross-disk install"); a build
# in a new appliance then succeeds (seen on these machines, not reproduced on demand).
_GRUB_FLAKE = "required for cross-disk install"


def make_bootable_disk(rootfs: Path, disk: Path, size_bytes: int, *, force_tcg: bool,
                       step: Callable[[str], None] = lambda s: None, log: Path | None = None) -> None:
    """Create the raw disk `disk` of `size_bytes`: MBR, one ext4 partition labelled FS_LABEL
    holding a copy of the directory `rootfs` (whose /etc/fstab and /etc/default/grub are
    boot_files'), GRUB installed. Raises ToolError on any failure."""
    def again(_: ToolError) -> None:
        disk.unlink(missing_ok=True)
        step("grub-install took the wrong disk; once more in a new appliance")

    once_more_on(_GRUB_FLAKE, lambda: _make_disk(rootfs, disk, size_bytes, force_tcg, step, log), again)


def _make_disk(rootfs: Path, disk: Path, size_bytes: int, force_tcg: bool, step: Callable[[str], None],
               log: Path | None) -> None:
    step("filesystem from the rootfs")
    mkfs.ext4_from_directory(rootfs, disk, size_bytes, FS_LABEL, log)
    g = _handle(force_tcg)
    try:
        g.add_drive_opts(str(disk), format="raw", readonly=False, discard="besteffort")
        step("start appliance")
        g.launch()
        dev = g.list_devices()[0]
        step("partition")
        g.part_init(dev, "mbr")
        # Around the filesystem mkfs made: from its first sector to the disk's last (-1).
        g.part_add(dev, "p", mkfs.PARTITION_START // 512, -1)
        g.part_set_bootable(dev, 1, True)
        g.mount(g.list_partitions()[0], "/")
        step("install grub")
        g.command(["grub-install", "--target=i386-pc", _root_disk(g)])
        g.command(["update-grub"])
        g.fstrim("/")
        g.umount_all()
        g.shutdown()
    except RuntimeError as e:
        raise ToolError(["libguestfs", str(disk)], 1, str(e)) from None
    finally:
        g.close()
