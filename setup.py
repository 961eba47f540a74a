"""Build script for the compiled kernels; everything else is declared in pyproject.toml.

The kernels are optional: without a C compiler the install still succeeds and pathtrace uses its
numpy implementations of the same steps (slower, identical results).
"""

from setuptools import Extension, setup

_FLAGS = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension(
            "tracer.pcap._native",
            ["tracer/pcap/_native.c"],
            extra_compile_args=_FLAGS,
            optional=True,
        ),
        Extension(
            "tracer.correlate._native",
            ["tracer/correlate/_native.c"],
            extra_compile_args=_FLAGS,
            optional=True,
        ),
    ]
)
