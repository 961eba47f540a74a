"""Diagnosis: the six troubleshooting steps, automated over one run directory.

Pure except for `gather`: `gather(RUN)` reads a run directory into `RunFacts` (captures,
correlation, decoded DNS/HTTP/ICMP, node rules and conntrack, cluster health facts);
`diagnose(facts)` turns them into findings, each with a severity, the step it belongs to
(1 nodes & pods, 2 backend service, 3 DNS, 4 Service/kube-proxy, 5 Ingress, 6 path), its
evidence and the next thing to try, the most likely cause first. `render_text`/`render_json`
print them. Nothing here prints or picks an exit code.

    facts = gather("pcaps/no-endpoints")
    result = diagnose(facts)
    print(render_text(result))
"""

from tracer.diagnose.gather import gather
from tracer.diagnose.model import STEPS, Diagnosis, Finding, RunFacts
from tracer.diagnose.render import SCHEMA, render_json, render_text
from tracer.diagnose.steps import SLOW_MS, diagnose

__all__ = [
    "SCHEMA",
    "SLOW_MS",
    "STEPS",
    "Diagnosis",
    "Finding",
    "RunFacts",
    "diagnose",
    "gather",
    "render_json",
    "render_text",
]
