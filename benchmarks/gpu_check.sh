#!/usr/bin/env bash
# GPU acceptance check: doctor (with the fabric checks), the GPU-marked tests, the bench on every visible
# GPU at once (one worker per GPU), a 60 s `envcheck burn` of every GPU, `envcheck comm` over NCCL, and
# envcheck-vs-raw-loop figures, in under 5 minutes, with everything saved under $OUT.
#
#   OUT=/tmp/out benchmarks/gpu_check.sh            # BENCH_DEVICE=cuda (every visible GPU) by default
#
# Every step runs under its own timeout (together 275 s), then gets SIGINT and a grace of 2 s (the bench
# 8 s, to finish the operation it is in and save what it measured; the burn 5 s, to judge and write what
# ran) before SIGKILL, so the whole check ends inside 5 minutes even if steps hang (298 s at most). Each
# step's exit code and wall time go to $OUT/steps.tsv and $OUT/summary.json, so one failing step never
# hides the others; the script exits non-zero if any failed.
# The bench step leaves its text report in bench.out, the JSON (--save) in bench.json and the Markdown
# (--output) in bench.md.
#
# The burn step leaves its text report in burn.out and the envcheck.burn/1 JSON (--output) in burn.json:
# the timeline of clocks, power, temperatures and throughput, second by second.
#
# The comm step leaves its text report in comm.out and the JSON (--output) in comm.json. With one GPU the
# world has one rank: the collectives are then trivial copies, but NCCL, the launch, the verification and
# the report all run on the card.
#
# Expected on one H100/H200: doctor ~10 s, pytest -m gpu ~60 s, bench (default) ~90 s (the torch child
# that proves torch imports and CUDA starts comes first), burn ~70 s (the same torch child, then 60 s of
# load), comm ~20 s, bench_vs_raw ~15 s with 2 rounds. The 5-minute cap leaves the bench 75 s: a bench
# still running then is stopped (SIGINT) and saves what it measured (exit 130).
set -u

OUT="${OUT:?set OUT to a directory for the results}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."

if [ -n "${PYTHON:-}" ]; then :
elif [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python
else PYTHON=python3
fi
DEVICE="${BENCH_DEVICE:-cuda}"

printf 'step\texit_code\twall_s\tcommand\n' > "$OUT/steps.tsv"
overall=0

step() {  # [GRACE=S] step NAME TIMEOUT_S COMMAND... ; stdout -> $OUT/NAME.out, stderr -> $OUT/NAME.err
    local name="$1" limit="$2" grace="${GRACE:-2}"; shift 2
    local start end rc
    echo "== $name: $*" >&2
    start=$(date +%s.%N)
    # SIGINT, as Ctrl-C would: the bench then still saves what it measured (exit 130), pytest its junit XML.
    timeout --signal=INT --kill-after="$grace" "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
    rc=$?
    end=$(date +%s.%N)
    printf '%s\t%s\t%.1f\t%s\n' "$name" "$rc" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$*" >> "$OUT/steps.tsv"
    echo "   exit $rc" >&2
    [ "$rc" -ne 0 ] && overall=1
    return 0
}

step env 10 bash -c "nvidia-smi; $PYTHON -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.device_count())'"
step doctor 20 "$PYTHON" -m envcheck doctor --json
cp "$OUT/doctor.out" "$OUT/doctor.json" 2>/dev/null
step pytest_gpu 60 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests --junitxml="$OUT/pytest-gpu.xml"
GRACE=8 step bench 75 "$PYTHON" -m envcheck bench --device "$DEVICE" --save "$OUT/bench.json" --output "$OUT/bench.md"
GRACE=5 step burn 75 "$PYTHON" -m envcheck burn --device "$DEVICE" --duration 60s --output "$OUT/burn.json"
step comm 20 "$PYTHON" -m envcheck comm --timeout 15 --output "$OUT/comm.json"
step bench_vs_raw 15 "$PYTHON" benchmarks/bench_vs_raw.py --device cuda:0 --rounds 2 --no-suite \
    --json "$OUT/bench_vs_raw.json"

"$PYTHON" - "$OUT" <<'PY' || overall=1
import csv, json, sys
out = sys.argv[1]
with open(f"{out}/steps.tsv") as fh:
    steps = list(csv.DictReader(fh, delimiter="\t"))
json.dump({"steps": steps, "ok": all(s["exit_code"] == "0" for s in steps)}, open(f"{out}/summary.json", "w"), indent=2)
for s in steps:
    print(f"{s['step']:14} exit {s['exit_code']:>3}  {s['wall_s']:>6} s")
PY
exit "$overall"
