"""What a capture adds to the cluster, as specs: the labels every object carries, the debug
container added to a workload pod, the host-network pod on a node, and the tcpdump commands run in
them. Pure: nothing here talks to the cluster.
"""

from __future__ import annotations

from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
RUN_LABEL = "pathtrace.io/run"
NODE_ANNOTATION = "pathtrace.io/node"
# Public image with tcpdump, iptables, nft, conntrack, iproute2 and curl.
DEFAULT_IMAGE = "nicolaka/netshoot:v0.13"
DEFAULT_SNAPLEN = 256
# Only what tcpdump needs: NET_RAW to open the packet socket, NET_ADMIN for promiscuous mode.
CAPABILITIES = ("NET_ADMIN", "NET_RAW")


def labels(run_id: str) -> dict[str, str]:
    return {MANAGED_BY: "pathtrace", RUN_LABEL: run_id}


def tcpdump_argv(
    interface: str, bpf: str, *, snaplen: int = DEFAULT_SNAPLEN, max_packets: int | None = None
) -> tuple[str, ...]:
    """tcpdump writing pcap to stdout, packet by packet (see DESIGN: --immediate-mode -U).

    Nanosecond stamps: at microseconds a pod's sighting and its node's veth sighting of the same
    packet often share a stamp, and the order between them would rest on a tie-break.
    """
    argv = [
        "tcpdump", "-i", interface, "--immediate-mode", "-U", "--time-stamp-precision=nano",
        "-s", str(snaplen), "-w", "-",
    ]  # fmt: skip
    if max_packets is not None:
        argv += ["-c", str(max_packets)]
    # The filter is one argv element built from resolved addresses; never passed to a shell.
    argv.append(bpf)
    return tuple(argv)


def stop_argv() -> tuple[str, ...]:
    """Ends tcpdump gracefully (SIGINT flushes its buffer and prints its packet counts)."""
    return ("pkill", "-INT", "-x", "tcpdump")


def container_name(run_id: str, n: int) -> str:
    return f"pathtrace-{run_id}-{n}"


def ephemeral_container_spec(
    run_id: str, n: int, image: str, target_container: str | None, deadline_s: int
) -> dict[str, Any]:
    """The debug container added to a workload pod. Labels cannot go on containers: the manifest
    records each one, because ephemeral containers can never be removed."""
    spec: dict[str, Any] = {
        "name": container_name(run_id, n),
        "image": image,
        # A holder process: tcpdump runs through exec. When it ends, the runtime tears down the
        # container and everything exec'd in it, so the sleep is the dead-man switch.
        "command": ["sleep", str(deadline_s)],
        "stdin": False,
        "tty": False,
        "terminationMessagePolicy": "File",
        "securityContext": {"capabilities": {"add": list(CAPABILITIES)}},
    }
    if target_container:
        spec["targetContainerName"] = target_container
    return spec


def node_pod_manifest(
    run_id: str,
    n: int,
    node: str,
    namespace: str,
    image: str,
    deadline_s: int,
    *,
    privileged: bool = False,
) -> dict[str, Any]:
    """A host-network pod pinned to `node`; activeDeadlineSeconds kills it if we cannot."""
    security: dict[str, Any] = (
        {"privileged": True} if privileged else {"capabilities": {"add": list(CAPABILITIES)}}
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pathtrace-{run_id}-node-{n}",
            "namespace": namespace,
            "labels": labels(run_id),
            "annotations": {NODE_ANNOTATION: node},
        },
        "spec": {
            "nodeName": node,
            "hostNetwork": True,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline_s,
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "capture",
                    "image": image,
                    "command": ["sleep", str(deadline_s)],
                    "securityContext": security,
                }
            ],
        },
    }
