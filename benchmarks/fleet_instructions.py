"""Instructions per file of the fleet's reading against the floor's, counted by valgrind: a figure that does
not move with the neighbours' work on a shared machine.

Wall-clock and CPU times on the shared 2-core VM move by up to half between identical runs
(benchmarks/RESULTS-fleet.md), which hides a change of 10 %. The count of instructions a run executes does
not move. For each kind of report (the doctor's and the bench's, as ``benchmarks/fleet_merge.py --dir DIR``
generated them), it counts, under ``valgrind --tool=cachegrind``:

* the floor: each file read and decoded with the fleet's parser, nothing else;
* the fleet's work in a worker: the files read, decoded, digested and merged in batches, and each batch's
  merged state pickled as the pool sends it (``envcheck.fleet.app.merge_files``);

each less a run over no file (the interpreter's start and imports), divided by the files. Instructions are
not time: the decoder's loop retires more of them per cycle than Python's, so the time ratio is larger.

    python benchmarks/fleet_instructions.py DIR [--files 512]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: What one counted run does: ``KIND MODE N DIR`` (MODE floor or fleet) over N files of that kind.
_RUN = r"""
import gc, pickle, sys
from envcheck.fleet.read import DECODER
from envcheck.fleet.app import merge_files
gc.disable()
kind, mode, n, directory = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import os
nodes = sorted(os.listdir(directory))[:n]
paths = [os.path.join(directory, node, kind + ".json") for node in nodes][:n]
if mode == "fleet":
    for i in range(0, len(paths), 256):
        pickle.dumps(merge_files(paths[i : i + 256]), pickle.HIGHEST_PROTOCOL)
else:
    for path in paths:
        with open(path, "rb") as f:
            DECODER.decode(f.read())
"""


def instructions(kind: str, mode: str, files: int, directory: Path) -> int:
    run = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
        + [sys.executable, "-c", _RUN, kind, mode, str(files), str(directory)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
    if found is None:
        raise SystemExit(f"valgrind said no instruction count:\n{run.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a fleet made by benchmarks/fleet_merge.py --dir")
    parser.add_argument("--files", type=int, default=512, help="files of each kind counted")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("fleet_instructions: valgrind is not installed")
    base = instructions("doctor", "floor", 0, args.directory)
    per: dict[tuple[str, str], float] = {}
    for kind in ("doctor", "bench"):
        for mode in ("floor", "fleet"):
            per[kind, mode] = (instructions(kind, mode, args.files, args.directory) - base) / args.files / 1e6
    lines = [f"millions of instructions per file ({args.files} files of each kind; valgrind, CPython):"]
    for kind in ("doctor", "bench"):
        floor, fleet = per[kind, "floor"], per[kind, "fleet"]
        lines.append(f"- {kind}: floor {floor:.3f}, fleet {fleet:.3f} ({fleet / floor:.2f}× the floor)")
    floor = per["doctor", "floor"] + per["bench", "floor"]
    fleet = per["doctor", "fleet"] + per["bench", "fleet"]
    lines.append(f"- a node's pair: floor {floor:.3f}, fleet {fleet:.3f} ({fleet / floor:.2f}× the floor)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
