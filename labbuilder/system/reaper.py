"""Run a command that starts daemons, and stay behind as their reaper.

    python reaper.py COMMAND [ARG...]

Exits with COMMAND's status once COMMAND ends, like running it directly; a detached
process lives on as a child subreaper (prctl PR_SET_CHILD_SUBREAPER) of everything
COMMAND left running, and reaps each of them the moment it exits, until none is left.

Why: libvirtd's QEMU and dnsmasq processes are daemonized, so they end up children of
whatever adopts orphans. Where that is a PID 1 that reaps late (these machines' init
reaps every couple of seconds), libvirt waits for the exited QEMU's zombie to go, and
every `virDomainDestroy` takes about 2 s instead of a few ms. On a host with systemd
the system libvirtd does not need this.

A standalone script (no imports from labbuilder): it is run by path with the caller's
Python.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    status_r, status_w = os.pipe()
    if os.fork() != 0:
        # The caller's side: wait for COMMAND's status from the reaper, return it.
        os.close(status_w)
        with os.fdopen(status_r, "rb") as pipe:
            data = pipe.read()
        return int(data or b"1")
    os.close(status_r)
    os.setsid()
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"reaper: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
    try:
        rc = subprocess.call(argv)
    except OSError as e:
        print(f"reaper: {argv[0]}: {e}", file=sys.stderr)
        rc = 127
    # Let go of the caller's pipes, so its wait for our output ends with COMMAND.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.write(status_w, str(rc).encode())
    os.close(status_w)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return 0  # nothing left to reap
        except InterruptedError:
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
