"""Checks judge probed data. Importing this package registers every check, in report order."""

from envcheck.doctor.checks import driver, env, fabric, gpu, host, packages, required, torch  # noqa: F401
