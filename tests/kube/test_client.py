"""KubeApi's errors for kubeconfigs that are not: named, with a hint, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.errors import ClusterError
from tracer.kube.client import KubeApi


@pytest.mark.parametrize(
    "content", ["just a line\n", "- a\n- list\n", "clusters: 3\n", "{", "\x00\xff"]
)
def test_a_file_that_is_no_kubeconfig_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config"
    path.write_text(content, errors="surrogateescape")
    with pytest.raises(ClusterError) as e:
        KubeApi(str(path))
    assert str(path) in e.value.message
