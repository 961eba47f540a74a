"""The lab adapter: the lab's planned topology served as a cluster, without building it."""

from __future__ import annotations

from tracer.apiserver.objects import endpoint_slice
from tracer.lab.clusterstate import lab_cluster_state
from tracer.lab.services import cluster_services
from tracer.lab.topology import plan_topology


def test_lab_topology_as_cluster_state() -> None:
    topo = plan_topology(2)
    state = lab_cluster_state(topo)
    assert [(n.name, n.netns) for n in state.nodes] == [(n.name, n.netns) for n in topo.nodes]
    by_name = {p.name: p for p in state.pods}
    for p in topo.pods:
        assert (by_name[p.name].ip, by_name[p.name].netns, by_name[p.name].node) == (
            p.ip,
            p.netns,
            p.node,
        )
    assert by_name["coredns"].labels["k8s-app"] == "kube-dns"
    truth = {(s.namespace, s.name): s for s in cluster_services(topo)}
    for s in state.services:
        t = truth[(s.namespace, s.name)]
        assert s.cluster_ip == t.cluster_ip
        assert len(s.endpoints) == len([e for e in t.endpoints if e.pod])


def test_stale_endpoint_is_listed_like_a_real_api_server_does() -> None:
    topo = plan_topology(2)
    state = lab_cluster_state(topo)
    truth = next(s for s in cluster_services(topo) if s.name == "web-stale")
    (ep,) = truth.endpoints
    assert ep.pod is not None and ep.pod.split("/")[1] not in {p.name for p in topo.pods}
    svc = next(s for s in state.services if s.name == "web-stale")
    pods = {(p.namespace, p.name): p for p in state.pods}
    (served,) = endpoint_slice(svc, pods)["endpoints"]
    assert served["addresses"] == [ep.ip]
    assert served["nodeName"] == ep.node
    assert served["conditions"]["ready"] is ep.ready
    assert served["targetRef"]["name"] == ep.pod.split("/")[1]
