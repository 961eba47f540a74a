"""pathtrace: follow one request through a Kubernetes cluster at the packet level."""

__version__ = "0.1.0"
