"""Checks judge probed data, one module per area. Importing this package imports every module in it, so each
check registers itself (a new module of checks needs no line here); the report orders them by area."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
