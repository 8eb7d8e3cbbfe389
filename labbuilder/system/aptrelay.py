"""Relay a TCP address inside a network namespace to the package cache on this host.

    python aptrelay.py --pidfile FILE [--netns PATH] --listen IP PORT --upstream PORT

Listens on IP:PORT inside the network namespace PATH (a private libvirtd's
/proc/PID/ns/net, or /run/netns/NAME; without --netns, this one) and forwards every
connection to 127.0.0.1:UPSTREAM in the namespace the relay was started in. One process
joins the two: the listening socket is made while the thread has joined PATH with
setns(2) and keeps that namespace for its life, while every upstream socket is made
after the thread is back home. No Unix socket, no second process.

The command returns once the relay listens (exit status 0; 1 and one line on stderr if
it cannot) and leaves the relay behind, detached, its pid in FILE. The relay ends on
SIGTERM, or by itself once PATH no longer names the namespace it listens in (the private
libvirtd or the `ip netns` namespace is gone), and removes FILE as it goes.

A standalone script (no imports from labbuilder): it is run by path with the caller's
Python, as root (setns needs CAP_SYS_ADMIN).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import socket
import sys

CLONE_NEWNET = 0x40000000
IP_FREEBIND = 15  # listen before the gateway address exists, and across a network's re-creation
WATCH_INTERVAL = 2.0
CHUNK = 65536
# A guest destroyed mid-download sends no FIN: keepalive ends its half of the relay.
KEEPALIVE = ((socket.TCP_KEEPIDLE, 60), (socket.TCP_KEEPINTVL, 10), (socket.TCP_KEEPCNT, 3))


def main(argv: list[str]) -> int:
    args = _parse(argv)
    try:
        listener = _listen_in(args.netns, args.listen[0], int(args.listen[1]))
        watched = os.stat(args.netns).st_ino if args.netns else None
    except OSError as e:
        where = args.netns or "this network namespace"
        print(f"aptrelay: cannot listen on {args.listen[0]}:{args.listen[1]} in {where}: "
              f"{e.strerror or e}", file=sys.stderr)
        return 1
    status = _detach(args.pidfile)
    if status is not None:
        return status
    try:
        asyncio.run(_serve(listener, args.upstream, args.netns, watched))
    finally:
        _remove_pidfile(args.pidfile)
    return 0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aptrelay")
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--netns", default="")
    parser.add_argument("--listen", nargs=2, required=True, metavar=("IP", "PORT"))
    parser.add_argument("--upstream", type=int, required=True)
    return parser.parse_args(argv)


def _listen_in(netns: str, ip: str, port: int) -> socket.socket:
    """A listening socket on ip:port made inside `netns` ('' for this namespace)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if netns:
            _enter(netns)
        try:
            return _listen(ip, port)
        finally:
            if netns:
                _setns(home)
    finally:
        os.close(home)


def _enter(netns: str) -> None:
    fd = os.open(netns, os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _listen(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.bind((ip, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _detach(pidfile: str) -> int | None:
    """Fork the relay into the background. In the caller's process: return its exit
    status (0 once the relay has written `pidfile`). In the relay: return None."""
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child != 0:
        os.close(ready_w)
        os.waitpid(child, 0)
        with os.fdopen(ready_r, "rb") as ready:
            ready.read()  # EOF: the relay wrote its pidfile (or died)
        return 0 if os.path.exists(pidfile) else 1
    os.close(ready_r)
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    _write_pidfile(pidfile)
    _detach_stdio(pidfile)
    os.close(ready_w)
    return None


def _write_pidfile(pidfile: str) -> None:
    tmp = f"{pidfile}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, pidfile)


def _detach_stdio(pidfile: str) -> None:
    """stdin from /dev/null, stdout and stderr to FILE's .log: the caller stops waiting."""
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(os.path.splitext(pidfile)[0] + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for fd, target in ((0, null), (1, log), (2, log)):
        os.dup2(target, fd)
    os.close(null)
    os.close(log)


def _remove_pidfile(pidfile: str) -> None:
    """Remove `pidfile` if it still names this process (a newer relay may own it)."""
    try:
        with open(pidfile) as f:
            mine = f.read().strip() == str(os.getpid())
        if mine:
            os.unlink(pidfile)
    except OSError:
        pass


async def _serve(listener: socket.socket, upstream: int, netns: str, watched: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(lambda r, w: _relay(r, w, upstream), sock=listener)
    watch = asyncio.create_task(_watch(netns, watched, stop))
    await stop.wait()
    watch.cancel()
    server.close()


async def _watch(netns: str, watched: int | None, stop: asyncio.Event) -> None:
    """Set `stop` once `netns` no longer names the namespace the relay listens in."""
    while watched is not None:
        await asyncio.sleep(WATCH_INTERVAL)
        try:
            if os.stat(netns).st_ino != watched:
                break
        except OSError:
            break
    if watched is not None:
        stop.set()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: int) -> None:
    """Copy one guest connection to 127.0.0.1:upstream and back, until both sides end."""
    _keepalive(writer.get_extra_info("socket"))
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_copy(reader, up_writer, writer), _copy(up_reader, writer, up_writer),
                         return_exceptions=True)
    for w in (writer, up_writer):
        w.close()


def _keepalive(sock) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in KEEPALIVE:
        sock.setsockopt(socket.IPPROTO_TCP, option, value)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                other: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on; on an error close both directions."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.close()
        other.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
