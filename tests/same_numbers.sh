#!/usr/bin/env bash
# Same seeds, same numbers: runs the smoke reproductions (pose and locomotion datasets) and the
# demo at a base commit and in this tree, each from an empty data root, and compares their
# results with experiments.compare_runs. Too long for the test suite (about 15 min on 2 cores);
# run it after a change that must not change behaviour:
#   make same-numbers BASE=<commit>      (or: bash tests/same_numbers.sh <commit> [out_dir])
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: same_numbers.sh BASE_COMMIT [OUT_DIR]}
out=${2:-$(mktemp -d /tmp/nar_same_numbers.XXXX)}
python=${PYTHON:-$PWD/.venv/bin/python}
worktree="$out/base_tree"
git worktree add --force --detach "$worktree" "$base" >/dev/null
trap 'git worktree remove --force "$worktree"' EXIT

run_all() {  # run_all SOURCE_TREE OUT
  local tree=$1 dest=$2
  mkdir -p "$dest"
  (cd "$tree" && export NAR_HOME="$dest/home" &&
   "$python" -m experiments.reproduce --preset=smoke --seeds=2 --out="$dest/smoke_pose" \
     > "$dest/smoke_pose.log" 2>&1 &&
   "$python" -m experiments.reproduce --preset=smoke --dataset=locomotion --seeds=2 \
     --out="$dest/smoke_locomotion" > "$dest/smoke_locomotion.log" 2>&1 &&
   "$python" -m experiments.demo --workdir="$dest/demo" > "$dest/demo.log" 2>&1)
}
echo "base $base -> $out/base; this tree -> $out/now"
run_all "$worktree" "$out/base"
run_all "$PWD" "$out/now"
status=0
for part in smoke_pose smoke_locomotion demo; do
  "$python" -m experiments.compare_runs --a="$out/base/$part" --b="$out/now/$part" || status=1
done
exit $status
