"""Rule evidence for a path: which kube-proxy rule did each rewrite, and does conntrack agree.

For every hop whose tuple changed (DNAT, SNAT and their undoing on the reply) this module finds
the node that did it, walks that node's ruleset with the packet as it was *before* the rewrite,
and returns the rule path, the candidate endpoints with their overall probabilities, the
masquerade decision and the conntrack entry that confirms it. Where the packets and the rules
disagree (a DNAT to an endpoint no rule names, a rewrite the rules do not make or one they make
that did not happen, a masquerade decision the packets contradict) it says so in a `Finding`.
A path that ends at a node is also walked there, so a DROP/REJECT rule is named.

Pure: takes a `model.Path` and parsed node facts, returns frozen dataclasses (data, not text:
`tracer.report.evidence` renders them). It reads no files and prints nothing; the edge
(`tracer.explain.facts`) reads RUN/nodes/<node>/. `model` holds the types, `nodewalk` how a
packet meets a node's facts, `collect` the evidence of each kind of rewrite.
"""

from tracer.explain.evidence.collect import collect_evidence, inbound_redirect, inbound_redirects
from tracer.explain.evidence.model import (
    Direction,
    Finding,
    Key,
    PathEvidence,
    RewriteEvidence,
    path_findings,
)

__all__ = [
    "Direction",
    "Finding",
    "Key",
    "PathEvidence",
    "RewriteEvidence",
    "collect_evidence",
    "inbound_redirect",
    "inbound_redirects",
    "path_findings",
]
