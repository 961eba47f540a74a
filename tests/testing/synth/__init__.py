"""Tests of the synthetic capture generator; `ALL`: every named scenario."""

from tracer.testing import synth

ALL = [
    synth.dnat_scenario,
    synth.overlay_scenario,
    synth.nodeport_scenario,
    synth.dns_scenario,
    synth.icmp_scenario,
    synth.loopback_scenario,
]
