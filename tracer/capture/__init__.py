"""Live capture: a pure plan, a backend that carries it out, and the run-directory writer.

`targets` is what tracer.kube resolves; `plan` computes every point from it, with the one BPF
filter of `filter` and the pod and container specs of `pods`. `lifecycle.run_capture` drives any
`backend.CaptureBackend` (`backend.KubernetesBackend` for a cluster) and always cleans up; the
settings and each point's state are `session`'s, incident mode (`--until`) is `incident` (with
`watch` judging the traffic and `ring` keeping the window), node and pod facts are `facts`, and
the run's record is `manifest`. `writer` streams pcap bytes to RUN/points/ and keeps every
partial file valid.
"""
