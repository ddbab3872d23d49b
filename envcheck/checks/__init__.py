"""Checks judge probed data. Importing this package registers every check, in report order."""

from envcheck.checks import driver, env, gpu, host, packages, torch  # noqa: F401
