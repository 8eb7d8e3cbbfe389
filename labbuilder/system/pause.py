"""Pause points: the steps at which a test stops a command, to kill it exactly there.

A run whose environment has LABBUILDER_PAUSE_AT=<step> and LABBUILDER_PAUSE_FILE=<path>
stops when it reaches `pause_point(<step>)`: it writes its PID to <path> (written, then
renamed into place: a reader sees all of it or nothing) and waits until it is killed, or
until <path> is removed, and then goes on. Every thread that reaches the step stops
there; the run's other threads go on until they reach it too, or end. Without the
variables a pause point is one look-up in the environment and nothing else: one generic
call per step, never a branch that does something else under test.

The kill tests (tests/test_kills.py) start a command with these, wait for the PID,
check the process is alive, SIGKILL it, and prove that the next run mends what it left
and that nothing leaks; the checkpoint test (tests/test_claims.py) acts on the guests
while `checkpoint` is held between pausing them and saving them, then lets it go on.
Nothing else sets them. The steps, and the commands that pass them:

    networks         up (and reset, when it has networks to make): the networks of the
                     run are defined and started, nothing else yet
    volumes          up: a node's overlay, extra disks and seed exist, its domain not yet
    define           up: a node's domain is defined, not yet started
    wait             up: every domain is started; before waiting for SSH
    reset-deleted    reset: a node is stopped, its overlay and seed are deleted
    down-domains     down: the domains are removed, networks and pools not yet
    checkpoint-paused  checkpoint: every node is paused, no snapshot taken yet
    checkpoint-node  checkpoint: a node's snapshot is taken (every node is paused)
    revert-node      reset --to: a node is reverted to the checkpoint (the others paused)
    build-work       image build: its work directory (.build-*) exists, before mmdebstrap
"""

from __future__ import annotations

import os
import threading
import time

AT_ENV = "LABBUILDER_PAUSE_AT"
FILE_ENV = "LABBUILDER_PAUSE_FILE"
STEPS = ("networks", "volumes", "define", "wait", "reset-deleted", "down-domains", "checkpoint-paused",
         "checkpoint-node", "revert-node", "build-work")
_POLL = 0.1

_announcing = threading.Lock()
_announced = False  # the first thread at the step writes the PID file; the others find it there


def pause_point(step: str) -> None:
    """Stop here if LABBUILDER_PAUSE_AT names `step`, until killed or until the PID file
    is removed (see the module's text)."""
    global _announced
    if os.environ.get(AT_ENV) != step:
        return
    path = os.environ.get(FILE_ENV)
    if not path:
        threading.Event().wait()  # until SIGKILL
    with _announcing:
        if not _announced:
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(f"{os.getpid()}\n")
            os.replace(tmp, path)
            _announced = True
    while os.path.exists(path):
        time.sleep(_POLL)
