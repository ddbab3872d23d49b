"""Importing this module imports every module of the package, so each format module declares its format
(adding a format is adding a module). None of them imports rich or anything heavy at module level:
``--help`` lists the formats."""

import importlib
import pkgutil

import envcheck.render as _package

for _module in pkgutil.iter_modules(_package.__path__):
    if _module.name != "all":
        importlib.import_module(f"{_package.__name__}.{_module.name}")
