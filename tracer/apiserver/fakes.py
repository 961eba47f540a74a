"""Stand-in programs for running the capture flow without root, netns or real traffic.

`fake_exec_backend()` maps tcpdump, curl and the node-fact tools to this module run as a
script: "tcpdump" writes a small valid pcap to stdout packet by packet, prints "listening on" on
stderr and stops on SIGINT (printing its counts) or after -c packets. Environment knobs let tests
cut a stream mid-packet (PATHTRACE_FAKE_TCPDUMP=cut) or make it fail (=fail).
Used by tests and offline demos; never by a real capture.
"""

from __future__ import annotations

import signal
import struct
import sys
import time

from tracer.apiserver.state import (
    ClusterState,
    LocalExecBackend,
    NodeSpec,
    PodSpec,
    ServicePortSpec,
    ServiceSpec,
)

FACTS = {
    "iptables-save": "*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n",
    "iptables-legacy-save": "",
    "nft": "",
    "ipvsadm": "",
    "conntrack": "tcp 6 117 TIME_WAIT src=10.244.1.2 dst=10.96.0.20 sport=40000 dport=80 "
    "src=10.244.2.3 dst=10.244.1.2 sport=8080 dport=40000 [ASSURED] mark=0 use=1\n",
    "ip": '[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1"}]}]\n',
    "curl": "<html>hello from web</html>\n",
    "ip6tables-save": "",
    "sysctl": "net.netfilter.nf_conntrack_count = 12\nnet.netfilter.nf_conntrack_max = 131072\n",
}
# `conntrack -S`: the counters, as conntrack-tools 1.4.7 prints them.
CONNTRACK_STATS = (
    "cpu=0   \tfound=0 invalid=0 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 "
    "search_restart=0 clash_resolve=0 chaintoolong=0 \n"
)


def fake_exec_backend() -> LocalExecBackend:
    me = [sys.executable, "-m", "tracer.apiserver.fakes"]
    return LocalExecBackend({name: [*me, name] for name in ("tcpdump", *FACTS)})


def _packet(i: int) -> bytes:
    # Ethernet / IPv4 / TCP, 10.244.1.2:40000 -> 10.96.0.20:80, seq advancing per packet.
    payload = b"GET / HTTP/1.1\r\n\r\n"[: 1 + i % 18]
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1000 + i, 0, 0x50, 0x18, 64240, 0, 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(tcp),
        i,
        0,
        64,
        6,
        0,
        bytes([10, 244, 1, 2]),
        bytes([10, 96, 0, 20]),
    )
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    frame = eth + ip + tcp
    t = time.time()
    return struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame


def _tcpdump(args: list[str]) -> int:
    import os

    mode = os.environ.get("PATHTRACE_FAKE_TCPDUMP", "")
    iface = args[args.index("-i") + 1] if "-i" in args else "any"
    count = int(args[args.index("-c") + 1]) if "-c" in args else None
    if mode == "fail":
        sys.stderr.write("tcpdump: any: You don't have permission to perform this capture\n")
        return 1
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    out = sys.stdout.buffer
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 256, 1))
    out.flush()
    sys.stderr.write(
        f"tcpdump: listening on {iface}, link-type EN10MB (Ethernet), snapshot length 256 bytes\n"
    )
    sys.stderr.flush()
    n = 0
    while not stop and (count is None or n < count):
        rec = _packet(n)
        if mode == "cut" and n == 3:
            out.write(rec[: len(rec) // 2])
            out.flush()
            os._exit(137)  # as if the container were killed mid-write
        out.write(rec)
        out.flush()
        n += 1
        time.sleep(0.05)
    sys.stderr.write(
        f"{n} packets captured\n{n} packets received by filter\n0 packets dropped by kernel\n"
    )
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        return 2
    prog, args = argv[0], argv[1:]
    if prog == "tcpdump":
        return _tcpdump(args)
    if prog == "conntrack" and args[:1] == ["-S"]:
        sys.stdout.write(CONNTRACK_STATS)
        return 0
    sys.stdout.write(FACTS.get(prog, ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def sample_state() -> ClusterState:
    """A small two-node cluster: client on n1, web-1 behind Service web on n2, CoreDNS on n1."""
    return ClusterState(
        nodes=(
            NodeSpec("n1", "10.0.0.1", pod_cidr="10.244.1.0/24"),
            NodeSpec("n2", "10.0.0.2", pod_cidr="10.244.2.0/24"),
        ),
        pods=(
            PodSpec("default", "client", "n1", "10.244.1.2"),
            PodSpec("default", "web-1", "n2", "10.244.2.3", labels={"app": "web"}),
            PodSpec("kube-system", "coredns-1", "n1", "10.244.1.9", labels={"k8s-app": "kube-dns"}),
        ),
        services=(
            ServiceSpec(
                "default",
                "web",
                "10.96.0.20",
                (ServicePortSpec(80, 8080, name="http", node_port=30080),),
                ("web-1",),
                type="NodePort",
                selector={"app": "web"},
            ),
            ServiceSpec(
                "kube-system",
                "kube-dns",
                "10.96.0.10",
                (ServicePortSpec(53, 53, "UDP", "dns"),),
                ("coredns-1",),
            ),
        ),
    )
