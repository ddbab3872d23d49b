"""The build records of the extensions above torch, read from their files without importing them.

Some extensions fail without an undefined symbol to show for it. xformers imports "fine" when its C++
library was built for another torch and only warns that its fast kernels are gone (``xFormers was built for:
PyTorch 2.2.0+cu121 with CUDA 1201 (you have 2.2.0+cpu)``, facebookresearch/xformers#982); DeepSpeed's
prebuilt ops refuse a torch of another minor at first use; bitsandbytes looks for the library of torch's
CUDA version among the ones it ships (``CUDA Setup failed despite GPU being available``,
bitsandbytes-foundation/bitsandbytes#572). Each package writes down what it was built for, in a file that
can be read without running any of its Python:

- xformers: ``xformers/cpp_lib.json``, ``{"version": {"torch": "2.2.0+cu121", "cuda": 1201, "python": ...}}``
  (read back by ``xformers/_cpp_lib.py``);
- DeepSpeed: ``deepspeed/git_version_info_installed.py``, literals ``installed_ops`` and
  ``torch_info = {"version": "2.3", "cuda_version": "12.1", ...}`` (written by its setup.py);
- bitsandbytes: the ``libbitsandbytes_cuda{MAJOR}{MINOR}.so`` (and ``_cpu``) files it ships.

Standard library only and no envcheck import, like envcheck/probes/elf.py: the torch child loads this file
by path in the interpreter it judges.
"""

import ast
import json
import os
import re

#: Distribution name -> the top-level package whose files hold its record.
PACKAGES = {"xformers": "xformers", "deepspeed": "deepspeed", "bitsandbytes": "bitsandbytes"}
#: The most bytes read from one record file: they are a few hundred bytes; anything larger is not one.
MAX_RECORD_BYTES = 1 << 20
_BNB_LIBRARY = re.compile(r"^libbitsandbytes_(cuda\d+\w*|cpu|rocm\d+\w*|hip\w*)\.(so|dylib|dll)$")
#: The names DeepSpeed's record sets to literals.
_DEEPSPEED_FIELDS = ("version", "installed_ops", "compatible_ops", "torch_info")


def records(distributions=None):
    """{canonical distribution name: {"version", "path" (the package directory), "record" or "error"}} for
    the packages of :data:`PACKAGES` that are installed; a record that cannot be read says why."""
    if distributions is None:
        from importlib import metadata

        distributions = metadata.distributions()
    found = {}
    for dist in distributions:
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name not in PACKAGES or name in found:
            continue
        directory = os.path.abspath(str(dist.locate_file(PACKAGES[name])))
        entry = {"version": dist.version, "path": directory}
        try:
            entry["record"] = READERS[name](directory)
        except (OSError, ValueError, SyntaxError, TypeError, AttributeError, KeyError) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
        found[name] = entry
    return found


def _xformers(directory):
    """cpp_lib.json's ``version`` (torch, cuda as 100 * major + minor, hip, python); None when the file is
    absent: a build without its C++ library has nothing compiled to mismatch."""
    path = os.path.join(directory, "cpp_lib.json")
    if not os.path.exists(path):
        # Old releases shipped their C++ library without the record: that build is unknown, not absent.
        compiled = sorted(n for n in _listdir(directory) if n.startswith("_C") and ".so" in n)
        return {"version": None, "compiled": compiled} if compiled else None
    with open(path, encoding="utf-8") as f:
        data = json.loads(f.read(MAX_RECORD_BYTES))
    version = data.get("version") if isinstance(data, dict) else None
    return {"version": version if isinstance(version, dict) else {}}


def _deepspeed(directory):
    """The literals DeepSpeed's setup wrote (``installed_ops``, ``torch_info``...), parsed, never executed."""
    path = os.path.join(directory, "git_version_info_installed.py")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(MAX_RECORD_BYTES))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in _DEEPSPEED_FIELDS:
                try:
                    found[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    continue  # not a literal: a field DeepSpeed writes differently, left unread
    return found


def _bitsandbytes(directory):
    """The native libraries shipped, by file name (``libbitsandbytes_cuda121.so``)."""
    return {"libraries": sorted(n for n in os.listdir(directory) if _BNB_LIBRARY.match(n))}


def _listdir(directory):
    try:
        return os.listdir(directory)
    except OSError:
        return []


READERS = {"xformers": _xformers, "deepspeed": _deepspeed, "bitsandbytes": _bitsandbytes}
