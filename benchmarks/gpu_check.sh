#!/usr/bin/env bash
# The first real-GPU run of envcheck, self-sufficient on a fresh GPU machine with Python and pip: it makes
# its own environment (the CUDA torch the driver can run, envcheck with its test extra), proves torch sees
# CUDA, then runs every GPU path and the first-run comparisons of the GPU review, each step bounded, and
# writes one JSON summary.
#
#   OUT=/tmp/out benchmarks/gpu_check.sh
#
# Environment:
#   OUT              where everything goes (required): NAME.out / NAME.err per step, steps.tsv, summary.json
#   PYTHON           use this interpreter as it is (it must hold a CUDA torch, envcheck and pytest)
#   VENV             else the environment to make or reuse (default /tmp/envcheck-gpu-venv)
#   TORCH_INDEX_URL  the package index serving the torch build this driver needs (printed as "variant":
#                    cu130 from driver r580, cu126 from 525.60.13); else pip's own configuration (a local
#                    wheel directory through PIP_FIND_LINKS works too)
#   TORCH_SPEC       which torch to install (default: torch)
#   BENCH_DEVICE     devices for bench and burn (default cuda: every visible GPU)
#
# The steps, each under its own limit (above what it needs on one H100). At the limit: SIGTERM (not SIGINT,
# which a script started in the background ignores), then SIGKILL after a grace. Each step's exit code and
# wall time go to steps.tsv and summary.json, so one failing step never hides the others:
#   doctor        envcheck doctor --json (fabric; kernel log: is it readable, any Xid; net;   ~10 s  (limit 45)
#                 pcie; the CUDA libraries torch loaded)
#   nvml_vs_smi   the doctor's NVML readings against nvidia-smi --query-gpu                  ~2 s  (limit 30)
#   uuids         CUDA's device UUIDs against NVML's, index by index                         ~5 s  (limit 60)
#   pytest_gpu    the GPU-marked tests                                                      ~60 s  (limit 150)
#   bench         the default suite on every GPU at once                                    ~90 s  (limit 180)
#   burn          60 s of load on every GPU, with NVML telemetry                            ~70 s  (limit 110)
#   comm          collectives and P2P over NCCL; its transport (NCCL's own log, per rank)   ~20 s  (limit 60)
#   bench_vs_raw  envcheck's matmul and copy figures against a raw timing loop               ~20 s  (limit 60)
#   stopped       a bench stopped by SIGTERM after 20 s: it must write what ran (exit 143)   ~25 s  (limit 20)
#   leftovers     then no compute process may be left on any GPU                             ~2 s  (limit 40)
# About 5 minutes on one GPU, plus making the environment (a torch download) on the first run.
#
# Before any step, it stops with one line (and summary.json saying why) when there is no nvidia-smi, when
# the driver is older than any current torch supports, or when the torch it would use does not see CUDA
# (a CPU build, or a build for a newer driver).
set -u

OUT="${OUT:?set OUT to a directory for the results}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
DEVICE="${BENCH_DEVICE:-cuda}"
DRIVER=""
VARIANT=""
TORCH=""

printf 'step\texit_code\twall_s\tlimit_s\tcommand\n' > "$OUT/steps.tsv"
overall=0

summary() {  # summary STOPPED_REASON (empty: the run went through)
    python3 - "$OUT" "$1" "$DRIVER" "$VARIANT" "$TORCH" <<'PY'
import csv, json, os, sys
out, stopped, driver, variant, torch = sys.argv[1:6]
with open(f"{out}/steps.tsv") as fh:
    steps = list(csv.DictReader(fh, delimiter="\t"))
compared = {}
stopped_ok = False
try:
    with open(f"{out}/stopped.json") as fh:
        report = json.load(fh)
    stopped_ok = report.get("interrupted") is True and report.get("stopped_by") == "SIGTERM"
except (OSError, ValueError):
    pass
for name in ("nvml_vs_smi", "uuids", "leftovers", "bench_vs_raw"):
    path = f"{out}/{name}.json" if name == "bench_vs_raw" else f"{out}/{name}.out"
    try:
        with open(path) as fh:
            compared[name] = json.load(fh)
    except (OSError, ValueError):
        compared[name] = None
summary = {
    "ok": not stopped and bool(steps) and all(s["exit_code"] == "0" or (s["step"] == "stopped" and s["exit_code"] == "143" and stopped_ok) for s in steps),
    "stopped": stopped or None,
    "driver": driver or None,
    "torch_variant": variant or None,
    "torch": torch or None,
    "steps": steps,
    "comparisons": compared,
}
with open(f"{out}/summary.json", "w") as fh:
    json.dump(summary, fh, indent=2)
for s in steps:
    print(f"{s['step']:14} exit {s['exit_code']:>3}  {s['wall_s']:>6} s (limit {s['limit_s']} s)")
PY
}

stop() {  # one line, the summary, and out
    echo "gpu_check: $1" >&2
    summary "$1" > /dev/null
    exit 2
}

step() {  # [GRACE=S] step NAME LIMIT_S COMMAND... ; stdout -> $OUT/NAME.out, stderr -> $OUT/NAME.err
    local name="$1" limit="$2" grace="${GRACE:-5}"; shift 2
    local start end rc
    echo "== $name: $*" >&2
    start=$(date +%s.%N)
    # SIGTERM, as a scheduler would: bench, burn and comm then still write what they measured (README,
    # "Stopping a run").
    # --preserve-status: the command's own exit code (143 after an orderly stop), not timeout's 124.
    timeout --preserve-status --signal=TERM --kill-after="$grace" "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
    rc=$?
    end=$(date +%s.%N)
    printf '%s\t%s\t%.1f\t%s\t%s\n' "$name" "$rc" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" \
        "$limit" "$*" >> "$OUT/steps.tsv"
    echo "   exit $rc" >&2
    return 0
}

# -- the driver, and the torch build it can run ------------------------------------------------------------
command -v nvidia-smi > /dev/null || stop "no nvidia-smi on PATH: no NVIDIA driver here, so no GPU to check"
DRIVER="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2> /dev/null | head -n 1 | tr -d ' ')"
[ -n "$DRIVER" ] || stop "nvidia-smi answers no driver version: $(nvidia-smi 2>&1 | head -n 1)"
major="${DRIVER%%.*}"
case "$major" in (*[!0-9]*|"") stop "nvidia-smi's driver version is not one: $DRIVER";; esac
if [ "$major" -ge 580 ]; then VARIANT=cu130      # CUDA 13 builds need r580
elif [ "$major" -ge 525 ]; then VARIANT=cu126    # CUDA 12 builds run from 525.60.13 (minor-version compatibility)
else stop "driver $DRIVER is older than 525.60.13, the oldest any current CUDA build of torch runs on: upgrade it"
fi

# -- the environment -----------------------------------------------------------------------------------------
if [ -z "${PYTHON:-}" ]; then
    VENV="${VENV:-/tmp/envcheck-gpu-venv}"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== making $VENV (torch for $VARIANT, envcheck with its test extra)" >&2
        python3 -m venv "$VENV" || stop "cannot make a virtual environment at $VENV (python3 -m venv)"
    fi
    PYTHON="$VENV/bin/python"
    if ! "$PYTHON" -c 'import torch' 2> /dev/null; then
        "$PYTHON" -m pip install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC:-torch}" \
            > "$OUT/install.out" 2>&1 || stop "installing ${TORCH_SPEC:-torch} for $VARIANT failed: $(tail -n 1 "$OUT/install.out")"
    fi
    "$PYTHON" -m pip install -q -e '.[test]' >> "$OUT/install.out" 2>&1 \
        || stop "installing envcheck with its test extra failed: $(tail -n 1 "$OUT/install.out")"
fi
"$PYTHON" -c 'import envcheck, pytest' 2> /dev/null \
    || stop "$PYTHON has no envcheck or pytest: pip install -e '.[test]' into it, or leave PYTHON unset"

# -- torch must see CUDA -------------------------------------------------------------------------------------
TORCH="$("$PYTHON" -c 'import torch; print(torch.__version__, torch.version.cuda or "cpu", torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2> "$OUT/torch.err")" \
    || stop "torch does not import in $PYTHON: $(tail -n 1 "$OUT/torch.err")"
set -- $TORCH
if [ "${3:-0}" = "0" ]; then
    if [ "${2:-cpu}" = "cpu" ]; then
        stop "torch $1 in $PYTHON is a CPU build: install the $VARIANT build for driver $DRIVER (TORCH_INDEX_URL)"
    fi
    stop "torch $1 (CUDA $2) in $PYTHON sees no GPU under driver $DRIVER: install the $VARIANT build, check CUDA_VISIBLE_DEVICES"
fi
echo "== driver $DRIVER, torch $TORCH GPU(s), variant $VARIANT" >&2

# -- the steps -------------------------------------------------------------------------------------------------
step doctor 45 "$PYTHON" -m envcheck doctor --json -o "$OUT/doctor.json"
step nvml_vs_smi 30 "$PYTHON" benchmarks/gpu_compare.py nvml-vs-smi "$OUT/doctor.json"
step uuids 60 "$PYTHON" benchmarks/gpu_compare.py uuids "$OUT/doctor.json"
step pytest_gpu 150 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests --junitxml="$OUT/pytest-gpu.xml"
GRACE=30 step bench 180 "$PYTHON" -m envcheck bench --device "$DEVICE" --save "$OUT/bench.json" --output "$OUT/bench.md"
GRACE=30 step burn 110 "$PYTHON" -m envcheck burn --device "$DEVICE" --duration 60s --output "$OUT/burn.json"
GRACE=30 step comm 60 "$PYTHON" -m envcheck comm --timeout 30 --output "$OUT/comm.json"
step bench_vs_raw 60 "$PYTHON" benchmarks/bench_vs_raw.py --device cuda:0 --rounds 2 --no-suite \
    --json "$OUT/bench_vs_raw.json"
# A bench stopped 20 s in: it must write what ran and exit 143; then no process may be left on a GPU.
GRACE=30 step stopped 20 "$PYTHON" -m envcheck bench --device "$DEVICE" --json -o "$OUT/stopped.json"
step leftovers 40 "$PYTHON" benchmarks/gpu_compare.py leftovers

summary "" || overall=1
python3 -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["ok"] else 1)' "$OUT/summary.json" || overall=1
exit "$overall"
