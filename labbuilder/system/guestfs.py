"""The one module that opens a libguestfs handle: turns a bootstrapped root directory into a
bootable disk (the filesystem made on the host by system/mkfs, the MBR and GRUB in the
appliance)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import guestfs  # Debian's python3-guestfs

from labbuilder.model.errors import ToolError
from labbuilder.system import mkfs
from labbuilder.system.run import once_more_on


@dataclass(frozen=True)
class DiskSpec:
    size_bytes: int
    kernel_cmdline: str
    files: tuple = ()  # of recipe.FileSpec
    enable: tuple[str, ...] = ()
    mask: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()  # installed units that must not start at boot
    fs_label: str = "root"


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


def _grub_defaults(cmdline: str) -> bytes:
    return (
        "GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_DISTRIBUTOR=Debian\n"
        f'GRUB_CMDLINE_LINUX_DEFAULT=""\nGRUB_CMDLINE_LINUX="{cmdline}"\n'
        "GRUB_TERMINAL=\"console serial\"\nGRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n"
        "GRUB_DISABLE_OS_PROBER=true\n"
    ).encode()


def _customize(g, spec: DiskSpec) -> None:
    for f in spec.files:
        g.mkdir_p(f.path.rsplit("/", 1)[0] or "/")
        g.write(f.path, f.content.encode())
        g.chmod(f.mode, f.path)
    for unit in spec.enable:
        g.command(["systemctl", "enable", unit])
    for unit in spec.mask:
        g.command(["systemctl", "mask", unit])
    for unit in spec.disable:
        g.command(["systemctl", "disable", unit])


# grub-install in the appliance now and then takes the partition for another disk
# ("embedding is not possible, but this is required for cross-disk install"); a build
# in a new appliance then succeeds (seen on these machines, not reproduced on demand).
_GRUB_FLAKE = "required for cross-disk install"


def make_bootable_disk(rootfs: Path, disk: Path, spec: DiskSpec, *, force_tcg: bool,
                       step: Callable[[str], None] = lambda s: None, log: Path | None = None) -> None:
    """Create the raw disk `disk`: MBR, one ext4 partition labelled spec.fs_label holding a
    copy of the directory `rootfs`, GRUB installed. Raises ToolError on any failure."""
    def again(_: ToolError) -> None:
        disk.unlink(missing_ok=True)
        step("grub-install took the wrong disk; once more in a new appliance")

    once_more_on(_GRUB_FLAKE, lambda: _make_disk(rootfs, disk, spec, force_tcg, step, log), again)


def _make_disk(rootfs: Path, disk: Path, spec: DiskSpec, force_tcg: bool, step: Callable[[str], None],
               log: Path | None) -> None:
    step("filesystem from the rootfs")
    mkfs.ext4_from_directory(rootfs, disk, spec.size_bytes, spec.fs_label, log)
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
        g.write("/etc/fstab", f"LABEL={spec.fs_label} / ext4 errors=remount-ro 0 1\n".encode())
        g.write("/etc/default/grub", _grub_defaults(spec.kernel_cmdline))
        step("files and services")
        _customize(g, spec)
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
