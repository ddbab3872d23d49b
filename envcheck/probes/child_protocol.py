"""How the doctor's child scripts (envcheck.probes.torch_child, envcheck.probes.jax_child) load the envcheck
modules they use.

A child runs by path with any interpreter (another virtualenv's python) and never imports envcheck: a broken or
half-installed envcheck must not change what it finds. The modules it needs are standard library only
(envcheck/core/workers.py, the protocol every child speaks; the torch child's probes.elf and probes.stack), and
are loaded from their files. Run by path, a child's directory, this one, is first on ``sys.path``, so it imports
this module by its bare name; imported as part of envcheck (the probes read the children's constants), by its
full name, and then everything comes from envcheck itself. This file is standard library only.
"""

import importlib
import importlib.util
import os
import sys


def load(package="core", name="workers"):
    """``envcheck.<package>.<name>``: imported as such when this module is part of envcheck, loaded from its file
    when a child runs by path."""
    if __package__:
        return importlib.import_module(f"envcheck.{package}.{name}")
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), package, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_envcheck_child_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module
