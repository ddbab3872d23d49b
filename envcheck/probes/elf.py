"""Which installed distributions ship compiled modules linked against torch's or CUDA's libraries, read
from their ELF dependencies (``DT_NEEDED``) without loading anything.

A flash-attn, xformers or vLLM wheel built for another torch fails only when its module is loaded
(``undefined symbol: _ZN3c104cuda9SetDeviceEi``); the torch child loads the modules found here, after
torch, to see that. Reading the dependencies first keeps the loading to the few modules that can fail
that way: most compiled modules in an environment (numpy, pydantic-core...) link no torch library.

Standard library only and no envcheck import: the torch child loads this file by path, in the
interpreter whose torch it judges, so the distributions scanned are those of that interpreter (another
virtualenv's, with ``--python``), never envcheck's own.

Bounded: a distribution with a huge file list, a network filesystem that stalls, a large environment
must not hold up the torch child, so the scan stops at :data:`MAX_FILES` ELF files read or
:data:`MAX_SECONDS`, and says it stopped (``truncated``) rather than pretending it saw everything.
"""

import csv
import os
import re
import struct
import time

#: Sonames that tie a module to torch's build (libc10, libc10_cuda, libtorch, libtorch_cpu/cuda/python) or
#: to one CUDA runtime major (``libcudart.so.12``).
TORCH_LIBRARY = re.compile(r"^(?:libc10(?:_\w+)?\.so|libtorch(?:_\w+)?\.so|libcudart\.so\.\d+)")
#: The most compiled files whose headers are read, and the most seconds spent, in one scan.
MAX_FILES = 400
MAX_SECONDS = 2.0
#: Distributions never loaded: torch itself (its own libraries are what the others link), the CUDA library
#: wheels, which link no torch, and bitsandbytes, whose ``libbitsandbytes_cudaNNN.so`` files are alternatives
#: (one per CUDA version, each linking its own ``libcudart``): loading them all would fail every one but the
#: one it picks, so the doctor judges that pick from the file list instead (envcheck/probes/stack.py).
SKIP_PREFIXES = ("nvidia-", "cuda-", "triton", "pytorch-triton")
SKIP_NAMES = {"torch", "bitsandbytes"}
#: Distributions whose every compiled module is loaded, whatever it links: the extensions above torch that
#: researchers install (FAILURES.md, "Third-party CUDA extensions"). Most link libc10 and would be found
#: anyway; a module of theirs that reaches torch only through another of their libraries is found too.
KNOWN = frozenset({
    "flash-attn", "flash-attn-3", "xformers", "apex", "deepspeed", "vllm", "vllm-flash-attn", "torchvision",
    "torchaudio", "transformer-engine", "transformer-engine-torch", "transformer-engine-cu12",
    "transformer-engine-cu13", "mamba-ssm", "causal-conv1d", "flashinfer-python", "sageattention",
})  # fmt: skip

_DT_NEEDED, _DT_STRTAB = 1, 5
_PT_LOAD, _PT_DYNAMIC = 1, 2
#: The fatbin container's magic (``FATBIN_MAGIC``); entry kinds: PTX text, an ELF cubin.
_FATBIN_MAGIC = 0xBA55ED50
_FATBIN_MAGIC_BYTES = struct.pack("<I", _FATBIN_MAGIC)
#: Entry kinds: PTX text, and the two kinds of ELF cubin ``cuobjdump --list-elf`` counts.
_FATBIN_PTX = 1
_FATBIN_KINDS = (_FATBIN_PTX, 2, 0x10)
#: Entry flags marking an arch-specific (``sm_90a``) and a family-specific (``sm_120f``) target.
_FATBIN_ARCH_SPECIFIC, _FATBIN_FAMILY = 0x100000, 0x200000
#: The most steps (entries, and containers or gaps between them) walked in one file, and the most seconds: a
#: large flash-attn holds a few thousand entries, cuBLASLt 5 500 in 2 800 containers.
MAX_FATBIN_ENTRIES = 200_000
FATBIN_SECONDS = 1.0
#: How much of a gap between containers is searched for the next one at a time.
_GAP_BLOCK = 1 << 16


def needed(path):
    """The ``DT_NEEDED`` sonames of the ELF shared object at ``path``; None when it is not one (or unreadable).

    Reads the program headers, the dynamic segment and the string table it points to: a few kilobytes,
    however large the library."""
    try:
        with open(path, "rb") as f:
            ident = f.read(64)
            if len(ident) < 52 or ident[:4] != b"\x7fELF":
                return None
            wide = ident[4] == 2
            end = "<" if ident[5] == 1 else ">"
            if wide:
                phoff, phentsize, phnum = (
                    struct.unpack_from(end + "Q", ident, 32)[0],
                    *struct.unpack_from(end + "HH", ident, 54),
                )
                phdr, dyn = end + "IIQQQQQQ", end + "qQ"
            else:
                phoff, phentsize, phnum = (
                    struct.unpack_from(end + "I", ident, 28)[0],
                    *struct.unpack_from(end + "HH", ident, 42),
                )
                phdr, dyn = end + "IIIIIIII", end + "iI"
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            loads, dynamic = [], None
            for i in range(phnum):
                fields = struct.unpack_from(phdr, table, i * phentsize)
                if wide:
                    kind, offset, vaddr, filesz = fields[0], fields[2], fields[3], fields[5]
                else:
                    kind, offset, vaddr, filesz = fields[0], fields[1], fields[2], fields[4]
                if kind == _PT_LOAD:
                    loads.append((vaddr, offset, filesz))
                elif kind == _PT_DYNAMIC:
                    dynamic = (offset, filesz)
            if dynamic is None:
                return []
            f.seek(dynamic[0])
            raw = f.read(min(dynamic[1], 1 << 16))
            size = struct.calcsize(dyn)
            names, strtab = [], None
            for i in range(len(raw) // size):
                tag, value = struct.unpack_from(dyn, raw, i * size)
                if tag == 0:
                    break
                if tag == _DT_NEEDED:
                    names.append(value)
                elif tag == _DT_STRTAB:
                    strtab = value
            if strtab is None:
                return []
            # DT_STRTAB is an address: the file offset is found through the PT_LOAD segment holding it.
            base = next((off + strtab - va for va, off, sz in loads if va <= strtab < va + sz), None)
            if base is None:
                return []
            found = []
            for name in names:
                f.seek(base + name)
                found.append(f.read(256).split(b"\0", 1)[0].decode("utf-8", "replace"))
            return found
    except (OSError, struct.error, ValueError):
        return None


def fatbin_targets(path, *, max_entries=MAX_FATBIN_ENTRIES, max_seconds=FATBIN_SECONDS):
    """The GPU targets the CUDA code in the ELF file at ``path`` was compiled for, as build flags
    (``["sm_80", "sm_90a", "compute_90"]``), read from its ``.nv_fatbin`` section; ``[]`` when the file holds
    no CUDA code, None when it is not an ELF file, cannot be read, or could not be read whole within
    ``max_entries`` steps and ``max_seconds`` (a part of the list would understate what the file runs on).

    Why read the binary: a package's own word on which GPUs it supports is in its README; what decides
    whether a kernel launches ("no kernel image is available for execution on the device") is which cubins
    and PTX its fatbin carries, the list ``cuobjdump --list-elf`` prints. The layout (containers of magic
    0xBA55ED50 with a 16-byte header, each holding entries whose header gives the kind (1 PTX, 2 or 0x10 an ELF
    cubin), its own size, the payload's size and, at byte 28, the target as 10 * major + minor) is walked by
    seeking from header to header, so a 300 MB fatbin costs a few thousand small reads; the gaps between
    containers are searched a block at a time. Checked against a CUDA torch's ``libtorch_cuda.so``, whose
    targets hold its whole ``torch.cuda.get_arch_list()``.

    Arch- and family-specific targets (``sm_90a``, ``sm_120f``), which run on one capability or one major only,
    are told by the entry's flags at byte 40: bit 0x100000 marks ``a``, bit 0x200000 ``f``. No public document
    says so; the reading rests on CUDA 13's own libraries: in cuBLASLt 13.0 the bit 0x100000 is set on 1 376 of
    its 1 597 sm_90 cubins (Hopper's wgmma kernels exist only as sm_90a) and on none below sm_90, and 0x200000
    only from sm_103 up, where family targets began (CUDA 12.9).
    """
    started = time.monotonic()
    try:
        with open(path, "rb") as f:
            ident = f.read(64)
            if len(ident) < 64 or ident[:4] != b"\x7fELF":
                return None
            if ident[4] != 2 or ident[5] != 1:
                return []  # CUDA code ships only in 64-bit little-endian objects (x86-64, aarch64)
            shoff = struct.unpack_from("<Q", ident, 40)[0]
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ident, 58)
            if not shoff or shstrndx >= shnum:
                return []
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            headers = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
            names_at, names_size = headers[shstrndx][4], headers[shstrndx][5]
            f.seek(names_at)
            names = f.read(min(names_size, 1 << 20))
            section = next(
                ((h[4], h[5]) for h in headers if names[h[0] : names.find(b"\0", h[0])] == b".nv_fatbin"), None
            )
            if section is None:
                return []
            targets, steps = set(), 0
            pos, end = section
            end += pos
            while pos + 16 <= end:
                steps += 1
                if steps > max_entries or time.monotonic() - started > max_seconds:
                    return None
                f.seek(pos)
                magic, _, header_size, size = struct.unpack("<IHHQ", f.read(16))
                if magic != _FATBIN_MAGIC:
                    # Padding between containers: find the next magic a block at a time, not 8 bytes a read.
                    f.seek(pos)
                    block = f.read(min(_GAP_BLOCK, end - pos))
                    at = block.find(_FATBIN_MAGIC_BYTES, 1)
                    pos = pos + at if at > 0 else pos + max(len(block) - 3, 8)
                    continue
                entry, stop = pos + header_size, pos + header_size + size
                while entry + 48 <= stop:
                    steps += 1
                    if steps > max_entries:
                        return None
                    f.seek(entry)
                    head = f.read(48)
                    kind, _, entry_size, payload = struct.unpack_from("<HHIQ", head)
                    arch = struct.unpack_from("<I", head, 28)[0]
                    flags = struct.unpack_from("<Q", head, 40)[0]
                    if kind in _FATBIN_KINDS and 10 <= arch < 1000:
                        suffix = "a" if flags & _FATBIN_ARCH_SPECIFIC else "f" if flags & _FATBIN_FAMILY else ""
                        targets.add(("compute" if kind == _FATBIN_PTX else "sm", arch, suffix))
                    if entry_size <= 0:
                        break
                    entry += entry_size + payload
                pos = max(stop, pos + 16)
            order = sorted(targets, key=lambda t: (t[0] != "sm", t[1], t[2]))
            return [f"{kind}_{arch}{suffix}" for kind, arch, suffix in order]
    except (OSError, struct.error, ValueError, IndexError):
        return None


def _is_compiled(name):
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".so") or ".so." in base


def _compiled_files(dist):
    """The compiled files a distribution's RECORD lists. Its text is read directly rather than through
    ``Distribution.files``, which makes a path object of every line: a tenth of a second across a usual
    environment, all of it on the torch child's path to its answer."""
    record = dist.read_text("RECORD") or ""
    for line in record.splitlines():
        name = next(csv.reader([line]))[0] if line.startswith('"') else line.split(",", 1)[0]
        if _is_compiled(name):
            yield name


def scan(distributions=None, *, max_files=MAX_FILES, max_seconds=MAX_SECONDS):
    """{"modules": [...], "files_read": N, "seconds": S, "truncated": reason or None, "error": text or None}.

    Each module: the distribution's name and version, the file's absolute path, and the torch and CUDA
    libraries it needs. ``distributions`` defaults to this interpreter's (importlib.metadata)."""
    started = time.monotonic()
    result = {"modules": [], "files_read": 0, "seconds": 0.0, "truncated": None, "error": None}
    try:
        if distributions is None:
            from importlib import metadata

            distributions = metadata.distributions()
        seen = set()
        for dist in distributions:
            name = (dist.metadata["Name"] or "").lower().replace("_", "-").replace(".", "-")
            if not name or name in seen or name in SKIP_NAMES or name.startswith(SKIP_PREFIXES):
                continue
            seen.add(name)
            for file in _compiled_files(dist):
                if result["files_read"] >= max_files:
                    result["truncated"] = f"stopped after reading {max_files} compiled files"
                    return _done(result, started)
                if time.monotonic() - started > max_seconds:
                    result["truncated"] = f"stopped after {max_seconds:g} s"
                    return _done(result, started)
                path = os.path.abspath(str(dist.locate_file(file)))
                result["files_read"] += 1
                links = [n for n in needed(path) or () if TORCH_LIBRARY.match(n) or name in KNOWN]
                if links:
                    result["modules"].append(
                        {"distribution": dist.metadata["Name"], "version": dist.version, "path": path, "needs": links}
                    )
    except Exception as exc:  # noqa: BLE001 - a broken metadata file is a scan that could not finish, said so
        result["error"] = f"{type(exc).__name__}: {exc}"
    return _done(result, started)


def _done(result, started):
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
