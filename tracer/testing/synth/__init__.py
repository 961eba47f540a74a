"""Synthetic captures with known ground truth: what every capture point sees of one exchange.

- `scenario`: the model (`Stage`, `Step`, `TruthPacket`, `Scenario`) and `build_scenario`, which
  routes an exchange through the stages and stamps every sighting with its point's clock.
- `exchanges`: packet exchanges (a TCP connection, DNS, ICMP quotes) and the named scenarios.
- `columns`: `frames_from_specs`, the `Frames` columns a reader would produce, so correlator
  tests do not depend on the capture reader.
- `bulk`: many overlapping connections built with numpy, as columns or pcap files.

The names below are the generator's public face; import them from here. Nothing here sends
traffic.
"""

from __future__ import annotations

from tracer.testing.synth.bulk import BulkTruth, bulk_dnat, bulk_dnat_pcaps, bulk_dnat_truth
from tracer.testing.synth.columns import frames_from_specs
from tracer.testing.synth.exchanges import (
    dnat_scenario,
    dnat_topology,
    dns_answer,
    dns_query,
    dns_scenario,
    icmp_quote,
    icmp_scenario,
    loopback_scenario,
    nodeport_scenario,
    overlay_scenario,
    tcp_exchange,
    tcp_segment,
)
from tracer.testing.synth.scenario import (
    START_NS,
    Scenario,
    Stage,
    Step,
    TruthPacket,
    build_scenario,
)
from tracer.testing.wire import ETHERNET, LINUX_SLL2, Pkt, Sighting, Vxlan, write_pcap, write_pcapng

__all__ = [
    "ETHERNET",
    "LINUX_SLL2",
    "START_NS",
    "BulkTruth",
    "Pkt",
    "Scenario",
    "Sighting",
    "Stage",
    "Step",
    "TruthPacket",
    "Vxlan",
    "build_scenario",
    "bulk_dnat",
    "bulk_dnat_pcaps",
    "bulk_dnat_truth",
    "dns_answer",
    "dns_query",
    "dns_scenario",
    "dnat_scenario",
    "dnat_topology",
    "frames_from_specs",
    "icmp_quote",
    "icmp_scenario",
    "loopback_scenario",
    "nodeport_scenario",
    "overlay_scenario",
    "tcp_exchange",
    "tcp_segment",
    "write_pcap",
    "write_pcapng",
]
