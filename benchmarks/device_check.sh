#!/usr/bin/env bash
# Every accelerator benchmark in one call, in under 8 minutes on one GPU, into one JSON.
#
#   benchmarks/device_check.sh [OUT.json]      (default: $OUT/device_check.json, else /tmp)
#
# Runs, each under its own time limit (the limits add up to 7.5 minutes):
#   benchmarks.swap        the exact swap kernel against its floors and an FP32 matmul of the
#                          same distances, GPU-sized chunks;
#   benchmarks.train_step  at swap_gpu shapes (the swap's cost in the step, the input side,
#                          the MFU), and at locomotion_cpu shapes (the rejection kernel);
#   benchmarks.embed       embedding new recordings.
# The JSON holds the device, the jax version, and per benchmark its exit status, seconds,
# printed lines and, where the benchmark writes them, its figures. SMOKE=1 runs every
# benchmark at tiny shapes (to check the script itself on a CPU). PYTHON picks the
# interpreter (default: .venv/bin/python if present, else python3).
set -u
cd "$(dirname "$0")/.."
OUT_FILE=${1:-${OUT:-/tmp}/device_check.json}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ "${SMOKE:-0}" = 1 ]; then
  SWAP_ARGS="--num_queries=64 --pool_size=512 --repeats=1 --numpy_repeats=1 --windows=4 \
    --bank_animals=2 --bank_frames=256 --table_queries=32 --table_pool_size=512 \
    --table_animals=2 --table_frames_per_animal=512"
  GPU_STEP_ARGS="--config=swap_cpu --steps=2 --workers=0 --topk=False"
  LOCOMOTION_STEP_ARGS="--config=locomotion_cpu --steps=2 --workers=0 --topk=False"
  EMBED_ARGS="--steps=2 --trial_seconds=8 --batch_size=64"
else
  SWAP_ARGS="--query_chunk=4096 --pool_chunk=16384"
  GPU_STEP_ARGS="--config=swap_gpu --steps=20 --workers=0,4"
  LOCOMOTION_STEP_ARGS="--config=locomotion_cpu --steps=20 --workers=0 --topk=False"
  EMBED_ARGS=""
fi

# run NAME LIMIT_SECONDS MODULE ARGS...: one benchmark, its output kept under $WORK.
run() {
  local name=$1 limit=$2
  shift 2
  local start
  start=$(date +%s)
  echo "== $name: $*" >&2
  timeout "$limit" "$PYTHON" -m "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  echo $? >"$WORK/$name.rc"
  echo $(($(date +%s) - start)) >"$WORK/$name.seconds"
  tail -n 3 "$WORK/$name.out" >&2
}

# shellcheck disable=SC2086
run swap 120 benchmarks.swap $SWAP_ARGS
# shellcheck disable=SC2086
run train_step_swap_gpu 180 benchmarks.train_step $GPU_STEP_ARGS \
  --json="$WORK/train_step_swap_gpu.json"
# shellcheck disable=SC2086
run train_step_locomotion 90 benchmarks.train_step $LOCOMOTION_STEP_ARGS \
  --json="$WORK/train_step_locomotion.json"
# shellcheck disable=SC2086
run embed 60 benchmarks.embed $EMBED_ARGS

"$PYTHON" - "$WORK" "$OUT_FILE" <<'EOF'
import json, pathlib, sys
import jax
work, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
report = {"device": jax.devices()[0].device_kind, "platform": jax.default_backend(),
          "num_devices": jax.device_count(), "jax": jax.__version__, "benchmarks": {}}
for rc in sorted(work.glob("*.rc")):
  name = rc.stem
  figures = work / f"{name}.json"
  report["benchmarks"][name] = {
      "returncode": int(rc.read_text()),
      "seconds": int((work / f"{name}.seconds").read_text()),
      "lines": (work / f"{name}.out").read_text().splitlines(),
      "error_tail": (work / f"{name}.err").read_text().splitlines()[-20:],
      "figures": json.loads(figures.read_text()) if figures.exists() else None,
  }
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(report, indent=2))
failed = [n for n, b in report["benchmarks"].items() if b["returncode"]]
print(f"wrote {out}; " + (f"failed: {failed}" if failed else "every benchmark ran"))
sys.exit(1 if failed else 0)
EOF
