"""Kubernetes access: the only package that imports the kubernetes client.

`client.KubeApi` wraps the API; `resolve` turns --from/--to into targets; `preflight` checks
RBAC and Pod Security before anything is created. Client objects never leave this package.
"""
