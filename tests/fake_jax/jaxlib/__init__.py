"""A stand-in for jaxlib beside tests/fake_jax/jax: only its version."""

__version__ = "0.4.20"
