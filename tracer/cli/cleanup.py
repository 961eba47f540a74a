"""`pathtrace cleanup`: delete what pathtrace left in a cluster; say what cannot be removed.

Only wiring: tracer.kube.client.cleanup_run (a run's own record) and cleanup_leftovers (labels)
do the work.
"""

from __future__ import annotations

from pathlib import Path

import click

from tracer.errors import ClusterError, UsageError


@click.command("cleanup")
@click.argument("run", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Path to the kubeconfig file.")
@click.option("--context", "kube_context", help="The kubeconfig context to use.")
@click.option("-n", "--namespace", help="Namespace to clean (default: the context's).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Clean every namespace.")
@click.option("--run", "run_id", metavar="ID", help="Only what run ID created (every namespace).")
def command(
    run: Path | None,
    kubeconfig: str | None,
    kube_context: str | None,
    namespace: str | None,
    all_namespaces: bool,
    run_id: str | None,
) -> None:
    """Delete what pathtrace left in a cluster.

    \b
    With RUN (a run directory): what that run created, in every namespace it touched, from
    the run's own record (RUN/manifest.json, written before anything was created).
    With --run ID: pods labelled pathtrace.io/run=ID, in every namespace.
    Otherwise: pods labelled app.kubernetes.io/managed-by=pathtrace in -n NAMESPACE (default:
    the context's) or, with -A, in every namespace.

    \b
    Ephemeral containers cannot be removed from a pod (the API forbids it): they are listed,
    and go away only when their pod is deleted or replaced (e.g. a rollout restart).
    Exit code 1 when some pod could not be deleted.

    \b
    Examples:
      pathtrace cleanup --run 20240102-030405-a1b2
      pathtrace cleanup -A
    """
    from tracer.kube.client import KubeApi, cleanup_leftovers, cleanup_run

    if all_namespaces and namespace:
        raise UsageError("give either -n NAMESPACE or --all-namespaces, not both")
    if run is not None and (run_id or namespace or all_namespaces):
        raise UsageError("RUN cleans what its record names: give no --run, -n or -A with it")
    record = None
    if run is not None:
        from tracer.rundir import load_manifest

        record = load_manifest(run).extra
        if not record.get("run_id"):
            raise UsageError(f"{run}: the manifest records no live capture (no run_id)")
    api = KubeApi(kubeconfig, kube_context, namespace)
    try:
        if record is not None:
            server = record.get("server")
            if server and server != api.server:
                raise ClusterError(
                    f"run {record['run_id']} was captured on {server}, the kubeconfig points "
                    f"at {api.server}",
                    hint="give the --kubeconfig/--context of the cluster the run was made on",
                )
            found = cleanup_run(api, record)
        elif run_id:
            found = cleanup_leftovers(api, None, run_id)
        else:
            found = cleanup_leftovers(api, None if all_namespaces else api.namespace, None)
    finally:
        api.close()
    for ns, name in found.deleted:
        click.echo(f"deleted pod {ns}/{name}")
    for ns, name in found.gone:
        click.echo(f"pod {ns}/{name} was already deleted")
    if not found.deleted and not found.gone:
        where = (
            "recorded by the run"
            if record is not None
            else ("in any namespace" if all_namespaces or run_id else f"in {api.namespace}")
        )
        click.echo(f"no pathtrace pods to delete ({where})")
    for ns, pod, c in found.ephemeral:
        click.echo(
            f"cannot remove ephemeral container {c} from pod {ns}/{pod} "
            "(it stays until the pod is deleted or replaced)"
        )
    if found.failed:
        raise ClusterError(
            "could not delete: " + "; ".join(f"{ns}/{n} ({why})" for ns, n, why in found.failed)
        )
