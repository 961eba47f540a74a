"""Rendering a `Path` (or a list of connections) for people and for programs.

`table` prints the path as text, `json` emits the stable `pathtrace/v1` document, `listing` the
one-line-per-connection `--list` view. Renderers take model objects and return strings; they
compute nothing the correlator should (no matching, no clock estimation, no latency).
"""
