"""`pathtrace cleanup`: delete leftover pathtrace pods by label; list what cannot be removed.

Only wiring: tracer.kube.client.cleanup_leftovers does the work.
"""

from __future__ import annotations

import click

from tracer.errors import ClusterError, UsageError


@click.command("cleanup")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Path to the kubeconfig file.")
@click.option("--context", "kube_context", help="The kubeconfig context to use.")
@click.option("-n", "--namespace", help="Namespace to clean (default: the context's).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Clean every namespace.")
@click.option("--run", "run_id", metavar="ID", help="Only what run ID created.")
def command(
    kubeconfig: str | None,
    kube_context: str | None,
    namespace: str | None,
    all_namespaces: bool,
    run_id: str | None,
) -> None:
    """Delete pods left by pathtrace (label app.kubernetes.io/managed-by=pathtrace).

    \b
    Ephemeral containers cannot be removed from a pod (the API forbids it): they are listed,
    and go away only when their pod is deleted or replaced (e.g. a rollout restart).
    Exit code 1 when some pod could not be deleted.
    """
    from tracer.kube.client import KubeApi, cleanup_leftovers

    if all_namespaces and namespace:
        raise UsageError("give either -n NAMESPACE or --all-namespaces, not both")
    api = KubeApi(kubeconfig, kube_context, namespace)
    try:
        found = cleanup_leftovers(api, None if all_namespaces else api.namespace, run_id)
    finally:
        api.close()
    for ns, name in found.deleted:
        click.echo(f"deleted pod {ns}/{name}")
    if not found.deleted:
        click.echo("no pathtrace pods to delete")
    for ns, pod, c in found.ephemeral:
        click.echo(
            f"cannot remove ephemeral container {c} from pod {ns}/{pod} "
            "(it stays until the pod is deleted or replaced)"
        )
    if found.failed:
        raise ClusterError(
            "could not delete: " + "; ".join(f"{ns}/{n} ({why})" for ns, n, why in found.failed)
        )
