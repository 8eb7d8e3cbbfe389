"""The one module that runs mke2fs: an image's root filesystem, made on the host from the
bootstrapped directory (native speed; unpacking it inside the TCG appliance took minutes)."""

from __future__ import annotations

from pathlib import Path

from labbuilder.system.run import run

# Where the one partition starts: 1 MiB (sector 2048), as fdisk and parted align it; the
# space before it holds the MBR and GRUB's core image.
PARTITION_START = 1 << 20


def ext4_from_directory(rootfs: Path, disk: Path, size_bytes: int, label: str, log: Path | None = None) -> None:
    """Create the raw disk `disk` of `size_bytes` with an ext4 filesystem labelled `label`
    from PARTITION_START to its end, holding a copy of `rootfs` as it is (owners, modes,
    extended attributes, hard links, device nodes). The partition table is not written:
    guestfs.make_bootable_disk adds it around the filesystem."""
    with open(disk, "wb") as f:
        f.truncate(size_bytes)
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-d", str(rootfs),
         "-E", f"offset={PARTITION_START}", str(disk), f"{(size_bytes - PARTITION_START) // 1024}k"], log=log)
