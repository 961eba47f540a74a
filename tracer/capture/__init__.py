"""Live capture: a pure plan, a backend that carries it out, and the run-directory writer.

`plan` computes filters, argv and specs; `lifecycle.run_capture` drives any `CaptureBackend`
(`lifecycle.KubernetesBackend` for a cluster) and always cleans up; `writer` streams pcap bytes
to RUN/points/ and keeps every partial file valid.
"""
