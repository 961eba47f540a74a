"""node-a's facts as kube-proxy and the kernel wrote them: the nat table of a ClusterIP Service
(10.96.0.100:80, default/web:http) with two endpoints chosen half the time each, a conntrack
entry of a request DNATed to the first, and the node's own address."""

RULES = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-X - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES -d 10.96.0.100/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-X
-A KUBE-SVC-X ! -s 10.244.0.0/16 -d 10.96.0.100/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-X -m comment --comment "default/web:http -> 10.244.2.9:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A
-A KUBE-SVC-X -m comment --comment "default/web:http -> 10.244.2.10:8080" -j KUBE-SEP-B
-A KUBE-SEP-A -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.2.9:8080
-A KUBE-SEP-B -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.2.10:8080
COMMIT
"""
CONNTRACK = (
    "tcp      6 119 TIME_WAIT src=10.244.1.7 dst=10.96.0.100 sport=53700 dport=80"
    " src=10.244.2.9 dst=10.244.1.7 sport=8080 dport=53700 [ASSURED] mark=0 use=1\n"
)
LINKS = '[{"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"192.168.56.11"}]}]'
