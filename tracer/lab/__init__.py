"""The namespace lab: kube-proxy's real data plane (iptables or nftables, flannel-style VXLAN,
bridge CNI) built from Linux network namespaces, with scenarios that write run directories.

Everything it creates carries the `pt-` prefix and lives in its own namespaces; it touches nothing
else on the machine.
"""
