"""The libvirt URIs labbuilder connects to, from a host inventory or --connect.

Only the transports a lab uses, and no URI parameter that names a program, socket or
file: libvirt runs `command=` (ext, ssh), `netcat=` on the remote host, opens `socket=`,
`keyfile=`, `known_hosts=` …, so an input that could set them could run a program as the
caller. A private libvirtd's `qemu+unix:///system?socket=…` is built by labbuilder itself
and never read from input.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

# qemu: KVM/QEMU hosts; xen: a Xen dom0's libxl driver (a domain_type xen lab); test: libvirt's test driver
DRIVERS = ("qemu", "xen")
WAYS = ("ssh", "tls", "tcp", "unix")  # a driver's transports: itself or DRIVER+WAY
TRANSPORTS = (*(d + w for d in DRIVERS for w in ("", *(f"+{w}" for w in WAYS))), "test")
TRANSPORTS_TEXT = ", ".join(f"{d}[+{'|+'.join(WAYS)}]" for d in DRIVERS) + ", test"
REMOTE = tuple(f"{d}+{w}" for d in DRIVERS for w in ("ssh", "tls", "tcp"))  # need a host
PARAMS = ("no_verify", "no_tty", "sshauth", "mode")
URI_HINT = "e.g. qemu+ssh://root@host-b/system, qemu+tls://host-b/system or qemu:///system"
XEN_HINT = "reach a dom0 with --connect xen+ssh://root@DOM0/system, or xen:///system on it; docs/design.md, A Xen domU"

_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_PORT = re.compile(r"[0-9]{1,5}")
_VALUE = re.compile(r"[A-Za-z0-9_,.-]{0,64}")
_TEST_PATH = re.compile(r"/[A-Za-z0-9_./+-]*")  # test:///default, test:///path/host.xml
_PATHS = ("/system", "/session")


def uri_problem(uri: str) -> str | None:
    """What makes `uri` one labbuilder does not connect to; None if it is fine."""
    if not uri or any(ch.isspace() or not ch.isprintable() for ch in uri):
        return "not a libvirt URI (empty, or a space or control character in it)"
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "not a libvirt URI"
    if not parts.scheme or not parts.netloc and not parts.path.startswith("/"):
        return "not a libvirt URI (transport://[user@host]/path)"
    if parts.scheme not in TRANSPORTS:
        return f"transport {parts.scheme!r} is not one labbuilder connects with ({TRANSPORTS_TEXT})"
    if parts.fragment or uri.endswith("#"):
        return "a '#' fragment is not allowed"
    return _server_problem(parts) or _path_problem(parts) or _query_problem(parts.query)


def uri_driver(uri: str) -> str:
    """The libvirt driver a URI reaches: qemu, xen or test (its transport's first word)."""
    return urlsplit(uri).scheme.partition("+")[0]


def _server_problem(parts) -> str | None:
    user, at, hostport = parts.netloc.rpartition("@")
    host, colon, port = hostport.rpartition(":") if not hostport.endswith("]") else (hostport, "", "")
    host = host if colon else hostport
    if parts.scheme in REMOTE and not hostport:
        return f"no host: transport {parts.scheme} reaches another machine"
    if parts.scheme in ("qemu+unix", "xen+unix", "test") and parts.netloc:
        return f"a host with transport {parts.scheme}, which is this machine's"
    if at and not _USER.fullmatch(user):
        return f"user {user!r} is not a user name"
    if hostport and not _HOST.fullmatch(host):
        return f"host {host!r} is not a host name or address"
    if colon and not _PORT.fullmatch(port):
        return f"port {port!r} is not a port number"
    return None


def _path_problem(parts) -> str | None:
    if parts.scheme == "test":
        ok = _TEST_PATH.fullmatch(parts.path) and ".." not in parts.path.split("/")
        return None if ok else f"path {parts.path!r} is not /default or a file's path"
    if parts.path not in _PATHS:
        return f"path {parts.path!r} is neither /system nor /session"
    return None


def _query_problem(query: str) -> str | None:
    if not query:
        return None
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return f"query {query!r} is not name=value pairs"
    for name, value in params:
        if name not in PARAMS:
            return (f"parameter {name}= is not allowed: labbuilder passes only {', '.join(PARAMS)} "
                    "(libvirt runs, opens or trusts what command=, netcat=, socket=, keyfile= … name)")
        if not _VALUE.fullmatch(value):
            return f"parameter {name}={value!r} is not a plain word"
    return None
