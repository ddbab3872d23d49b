"""Importing this module imports every renderer module of the package, so each registers its format."""

import importlib
import pkgutil

import envcheck.render as _package

for _module in pkgutil.iter_modules(_package.__path__):
    if _module.name != "all":
        importlib.import_module(f"{_package.__name__}.{_module.name}")
