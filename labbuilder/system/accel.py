"""Choose the accelerator: KVM where a guest really runs under it, else TCG.

`/dev/kvm` can exist and accept KVM_CREATE_VM while guests never execute (nested
virtualisation without VMX): so the probe boots a 64 KiB firmware that writes one byte
to a debug-exit port, and trusts KVM only if QEMU exits with that byte in time.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from labbuilder.model.errors import ToolError
from labbuilder.system.run import run

# mov al,'K' ; out 0xf4,al  (isa-debug-exit: QEMU exits with status (al << 1) | 1)
_RESET_CODE = bytes([0xB0, 0x4B, 0xE6, 0xF4, 0xF4])
_EXPECTED_RC = (0x4B << 1) | 1
_CACHE = Path("/run/labbuilder/accel")


@dataclass(frozen=True)
class Accelerator:
    domain_type: str  # libvirt <domain type=...>: "kvm" or "qemu"
    reason: str

    @property
    def kvm(self) -> bool:
        return self.domain_type == "kvm"

    def guestfs_env(self) -> dict[str, str]:
        """Environment for libguestfs so its appliance uses the same accelerator."""
        return {} if self.kvm else {"LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}


def _firmware() -> bytes:
    blob = bytearray(b"\xf4" * 65536)
    blob[0xFFF0:0xFFF0 + len(_RESET_CODE)] = _RESET_CODE
    return bytes(blob)


def _host_kernel() -> Path | None:
    kernels = sorted(Path("/boot").glob("vmlinuz-*"))
    return kernels[-1] if kernels else None


def _probe(timeout: float) -> Accelerator:
    """Boot the host's kernel under KVM for `timeout` s; KVM works if it prints its banner.

    A firmware-only probe is not enough: on nested hosts SeaBIOS runs under KVM while
    a Linux kernel hangs, so the probe runs what guests run.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Accelerator("qemu", "/dev/kvm is missing or not accessible")

    kernel = _host_kernel()
    with tempfile.TemporaryDirectory(prefix="labbuilder-kvm-") as tmp:
        serial = Path(tmp, "serial.log")
        argv = ["qemu-system-x86_64", "-accel", "kvm", "-machine", "q35", "-m", "256",
                "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{serial}"]
        if kernel:
            argv += ["-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"]
        else:
            Path(tmp, "fw.bin").write_bytes(_firmware())
            argv += ["-bios", str(Path(tmp, "fw.bin")), "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
        try:
            rc = run(argv, check=False, timeout=timeout).returncode
        except ToolError:
            rc = None
        text = serial.read_text(errors="replace") if serial.exists() else ""
    if (kernel and "Linux version" in text) or (not kernel and rc == _EXPECTED_RC):
        return Accelerator("kvm", "KVM works")
    if rc is None:
        return Accelerator("qemu", f"a KVM guest made no progress within {timeout:g}s (nested virtualisation?)")
    return Accelerator("qemu", f"QEMU could not run a KVM guest (exit status {rc})")


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def detect(timeout: float = 6.0) -> Accelerator:
    """Probe (once per host boot; the answer is cached under /run) which accelerator works."""
    try:
        boot, domain_type, reason = _CACHE.read_text().split("\n", 2)
        if boot == _boot_id():
            return Accelerator(domain_type, reason.strip())
    except (OSError, ValueError):
        pass
    found = _probe(timeout)
    try:
        _CACHE.parent.mkdir(parents=True, exist_ok=True)
        _CACHE.write_text(f"{_boot_id()}\n{found.domain_type}\n{found.reason}\n")
    except OSError:
        pass
    return found
