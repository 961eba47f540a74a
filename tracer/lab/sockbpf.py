"""Socket-level Service load-balancing for the lab: cgroup/connect4, sendmsg4 and recvmsg4 BPF
programs, as Cilium's socket LB (kube-proxy replacement) installs them.

The programs are emitted here as BPF instructions (a dozen; no compiler needed) and loaded with
the bpf(2) system call. connect4 and sendmsg4 look the destination (ClusterIP, port, protocol) up
in a hash map and rewrite it to a backend, so the socket is connected straight to the backend and
no packet ever carries the ClusterIP; recvmsg4 looks the reply's source up in the reverse map and
turns it back into the ClusterIP for unconnected UDP sockets, as Cilium's does.

Attachment is to a cgroup v2 directory the caller creates (a name unique to the run) and removes:
the kernel detaches and frees the programs and maps with the cgroup. `instructions` and the map
entries are pure; `SocketLB` is the edge that makes the system calls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import LabError

# bpf(2) commands, program, map and attach types (include/uapi/linux/bpf.h).
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_MAP_TYPE_HASH = 1
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
BPF_CGROUP_INET4_CONNECT = 10
BPF_CGROUP_UDP4_SENDMSG = 14
BPF_CGROUP_UDP4_RECVMSG = 19
ATTACH_NAMES = {
    BPF_CGROUP_INET4_CONNECT: "connect4",
    BPF_CGROUP_UDP4_SENDMSG: "sendmsg4",
    BPF_CGROUP_UDP4_RECVMSG: "recvmsg4",
}
SYS_BPF = {"x86_64": 321, "aarch64": 280}

# struct bpf_sock_addr field offsets.
USER_IP4 = 4
USER_PORT = 24
PROTOCOL = 36

KEY_SIZE = 8  # be32 address, be16 port, u8 IP protocol, u8 pad
VALUE_SIZE = 8  # be32 address, be16 port in the low half of a u32 (as ctx->user_port holds it)
MAX_ENTRIES = 64


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def instructions(map_fd: int) -> bytes:
    """The program: look up (ip, port, proto) of the socket address in `map_fd`; on a hit
    rewrite ctx->user_ip4 / user_port with the entry. Always allow (return 1)."""
    r0, r1, r2, r3, r4, r6, r10 = 0, 1, 2, 3, 4, 6, 10
    ldxw, stxw, stxh, stxb, stb = 0x61, 0x63, 0x6B, 0x73, 0x72
    mov64_reg, mov64_imm, add64_imm = 0xBF, 0xB7, 0x07
    jeq_imm, call, exit_, ld_imm64 = 0x15, 0x85, 0x95, 0x18
    pseudo_map_fd = 1
    helper_map_lookup_elem = 1
    prog = [
        _insn(mov64_reg, r6, r1),  # r6 = ctx
        _insn(ldxw, r2, r6, USER_IP4),
        _insn(ldxw, r3, r6, USER_PORT),
        _insn(ldxw, r4, r6, PROTOCOL),
        _insn(stxw, r10, r2, -8),  # key.addr
        _insn(stxh, r10, r3, -4),  # key.port
        _insn(stxb, r10, r4, -2),  # key.proto
        _insn(stb, r10, 0, -1, 0),  # key.pad
        _insn(ld_imm64, r1, pseudo_map_fd, 0, map_fd),
        _insn(0, 0, 0, 0, 0),
        _insn(mov64_reg, r2, r10),
        _insn(add64_imm, r2, 0, 0, -8),
        _insn(call, 0, 0, 0, helper_map_lookup_elem),
        _insn(jeq_imm, r0, 0, 4, 0),  # no entry: leave the address alone
        _insn(ldxw, r1, r0, 0),
        _insn(stxw, r6, r1, USER_IP4),
        _insn(ldxw, r1, r0, 4),
        _insn(stxw, r6, r1, USER_PORT),
        _insn(mov64_imm, r0, 0, 0, 1),
        _insn(exit_),
    ]
    return b"".join(prog)


PROTO_NUMBERS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP}


def map_key(ip: str, port: int, protocol: str) -> bytes:
    return socket.inet_aton(ip) + struct.pack("!HBB", port, PROTO_NUMBERS[protocol.upper()], 0)


def map_value(ip: str, port: int) -> bytes:
    return socket.inet_aton(ip) + struct.pack("!H", port) + b"\0\0"


def decode_key(key: bytes) -> tuple[str, int, str]:
    port, proto, _ = struct.unpack("!HBB", key[4:8])
    names = {v: k for k, v in PROTO_NUMBERS.items()}
    return socket.inet_ntoa(key[:4]), port, names.get(proto, str(proto))


def decode_value(value: bytes) -> tuple[str, int]:
    return socket.inet_ntoa(value[:4]), struct.unpack("!H", value[4:6])[0]


@dataclass(frozen=True)
class Frontend:
    """One Service port the socket LB serves: frontend (ClusterIP:port/proto) -> a backend."""

    ip: str
    port: int
    protocol: str  # TCP | UDP
    backend_ip: str
    backend_port: int


# ----------------------------------------------------------------------------- the edge


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _bpf(cmd: int, attr: bytes) -> int:
    nr = SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise LabError(f"the socket load-balancer does not know bpf(2) on {os.uname().machine}")
    buf = ctypes.create_string_buffer(attr, 128)
    ret = _libc().syscall(nr, cmd, buf, ctypes.c_uint(128))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


class SocketLB:
    """Maps and programs in the kernel, attached to one cgroup v2 directory."""

    def __init__(self, cgroup: Path) -> None:
        self.cgroup = cgroup
        self.fds: list[int] = []
        self.attached: list[tuple[int, int]] = []  # (attach type, prog fd)
        self.forward_fd = -1
        self.reverse_fd = -1
        self.log = ""

    def _map(self, name: bytes) -> int:
        attr = struct.pack(
            "<IIIIIII16s", BPF_MAP_TYPE_HASH, KEY_SIZE, VALUE_SIZE, MAX_ENTRIES, 0, 0, 0, name
        )
        fd = _bpf(BPF_MAP_CREATE, attr)
        self.fds.append(fd)
        return fd

    def _update(self, fd: int, key: bytes, value: bytes) -> None:
        k, v = ctypes.create_string_buffer(key), ctypes.create_string_buffer(value)
        attr = struct.pack("<IIQQQ", fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0)  # BPF_ANY
        _bpf(BPF_MAP_UPDATE_ELEM, attr)

    def _prog(self, map_fd: int, attach_type: int) -> int:
        code = instructions(map_fd)
        insns = ctypes.create_string_buffer(code)
        lic = ctypes.create_string_buffer(b"GPL")
        logbuf = ctypes.create_string_buffer(65536)
        name = f"pt_lb_{ATTACH_NAMES[attach_type]}".encode()[:15]
        attr = struct.pack(
            "<IIQQIIQII16sII",
            BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
            len(code) // 8,
            ctypes.addressof(insns),
            ctypes.addressof(lic),
            1,
            len(logbuf),
            ctypes.addressof(logbuf),
            0,
            0,
            name,
            0,
            attach_type,
        )
        try:
            fd = _bpf(BPF_PROG_LOAD, attr)
        except OSError as e:
            self.log = logbuf.value.decode(errors="replace")
            raise LabError(
                f"the kernel refused the {ATTACH_NAMES[attach_type]} program ({e.strerror})",
                hint=self.log.strip().splitlines()[-1] if self.log.strip() else None,
            ) from e
        self.fds.append(fd)
        return fd

    def install(self, frontends: Sequence[Frontend]) -> None:
        """Create the maps, fill them, load the three programs and attach them to the cgroup."""
        try:
            self.forward_fd = self._map(b"pt_lb_services")
            self.reverse_fd = self._map(b"pt_lb_revnat")
            for f in frontends:
                self._update(
                    self.forward_fd,
                    map_key(f.ip, f.port, f.protocol),
                    map_value(f.backend_ip, f.backend_port),
                )
                self._update(
                    self.reverse_fd,
                    map_key(f.backend_ip, f.backend_port, f.protocol),
                    map_value(f.ip, f.port),
                )
            cg = os.open(self.cgroup, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for attach_type, map_fd in (
                    (BPF_CGROUP_INET4_CONNECT, self.forward_fd),
                    (BPF_CGROUP_UDP4_SENDMSG, self.forward_fd),
                    (BPF_CGROUP_UDP4_RECVMSG, self.reverse_fd),
                ):
                    prog = self._prog(map_fd, attach_type)
                    _bpf(BPF_PROG_ATTACH, struct.pack("<IIII", cg, prog, attach_type, 0))
                    self.attached.append((attach_type, prog))
            finally:
                os.close(cg)
        except OSError as e:
            self.close()
            raise LabError(
                f"loading the socket load-balancer into cgroup {self.cgroup} failed: {e.strerror}",
                hint="it needs root, a kernel with BPF and a cgroup v2 mount",
            ) from e

    def entries(self) -> Iterator[tuple[tuple[str, int, str], tuple[str, int]]]:
        """The forward map as the kernel holds it: ((ip, port, proto), (backend ip, port))."""
        key = ctypes.create_string_buffer(KEY_SIZE)
        nxt = ctypes.create_string_buffer(KEY_SIZE)
        val = ctypes.create_string_buffer(VALUE_SIZE)
        first = True
        while True:
            attr = struct.pack(
                "<IIQQ",
                self.forward_fd,
                0,
                0 if first else ctypes.addressof(key),
                ctypes.addressof(nxt),
            )
            try:
                _bpf(BPF_MAP_GET_NEXT_KEY, attr)
            except OSError:
                return
            first = False
            ctypes.memmove(key, nxt, KEY_SIZE)
            attr = struct.pack(
                "<IIQQQ", self.forward_fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0
            )
            _bpf(BPF_MAP_LOOKUP_ELEM, attr)
            yield decode_key(key.raw), decode_value(val.raw)

    def close(self) -> None:
        """Detach the programs and close every descriptor (idempotent)."""
        if self.attached:
            try:
                cg = os.open(self.cgroup, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                cg = -1
            if cg >= 0:
                for attach_type, prog in self.attached:
                    try:
                        _bpf(BPF_PROG_DETACH, struct.pack("<IIII", cg, prog, attach_type, 0))
                    except OSError:
                        pass  # the cgroup's removal detaches it anyway
                os.close(cg)
            self.attached = []
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


# ----------------------------------------------------------------------------- cgroup v2

CGROUP_PREFIX = "pathtrace-lab-"


def cgroup2_root(mountinfo: str | None = None) -> Path:
    """Where cgroup v2 is mounted (from /proc/self/mountinfo)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return Path(left.split()[4])
    raise LabError(
        "no cgroup v2 hierarchy is mounted: the socket load-balancer attaches to one",
        hint="mount it: mount -t cgroup2 none /sys/fs/cgroup/unified",
    )


def remove_cgroup(path: Path) -> bool:
    """Remove a lab cgroup (moving any process left in it to the root first); True if gone."""
    if not path.name.startswith(CGROUP_PREFIX):
        raise LabError(f"{path}: not a lab cgroup; refusing to remove it")
    procs = path / "cgroup.procs"
    if procs.exists():
        root_procs = path.parent / "cgroup.procs"
        for pid in procs.read_text().split():
            try:
                root_procs.write_text(pid)
            except OSError:
                pass  # it exited meanwhile
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
