"""Every command of the README runs, at tiny shapes, as the README writes it.

The README's ```bash blocks are read line by line; each command must be in `COMMANDS`, which
says how this test runs it: the same entry point and flags, with paths moved into a temporary
folder and flags added that shrink the work (fewer steps, a tiny dataset, the smoke preset).
A README command missing from `COMMANDS`, or an entry of `COMMANDS` no longer in the README,
fails the test. The README's ```python block runs too, and every relative link resolves.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
PYTHON = ".venv/bin/python"
TINY_TRAIN = ("--config.optim.num_train_steps=2 --config.optim.warmup_steps=1 "
              "--config.eval.hop=40")
TINY_DATA = "--config.data.data_dir={tfds} --config.data.name=default"

# Commands that are not run here, and why.
EXEMPT = {
    "make test": "the test suite itself: CI runs it",
    "make same-numbers BASE=c92b83b": "two smoke reproductions and two demos (~15 min); "
                                      "experiments.compare_runs, which it calls, runs below",
    "make benchmarks": "every benchmark at full size; benchmarks.swap runs below",
    "make device-check": "tests/test_device_check.py runs benchmarks/device_check.sh at tiny "
                         "shapes (SMOKE=1)",
    'gcloud compute tpus tpu-vm ssh NAME --worker=all --command="cd nar && .venv/bin/python '
    '-m experiments.train --config=swap_tpu --multihost --workdir=gs://B/run '
    '--config.data.data_dir=gs://B/tfds"': "needs a TPU pod slice; the multi-process job "
                                           "runs in test_train's two-process test",
    f"{PYTHON} -m experiments.train --config=swap_gpu --workdir=/tmp/nar/swap_gpu":
        "needs a GPU for its shapes; the same entry point runs below at swap_cpu's",
    f"{PYTHON} -m experiments.train --config=swap_gpu --workdir=/shared/run --multihost "
    "--coordinator_address=HOST0:12355 --num_processes=2 --process_id=0":
        "needs two GPU processes; tests/test_train.py runs the same flags as a two-process "
        "CPU job (test_a_run_over_two_processes_trains_and_evaluates)",
}
EXEMPT[f"{PYTHON} -m experiments.sweep --dataset=locomotion_calibrated "
       "--training_animals=2,4,8,15 --knob=speed_scale_std=0.0,0.4 --seeds=3 --out=/tmp/sweep"] = (
           "36 runs at the cpu preset's size (11 min); tests/test_sweep.py runs the same "
           "command at the smoke preset's")
# README command -> (the command this test runs, a text its output must contain).
# `{tmp}` is this test's folder, `{tfds}` a tiny dataset built in it by the commands above.
COMMANDS = {
    "make demo": (
        f"{PYTHON} -m experiments.demo --workdir={{tmp}}/demo {TINY_DATA} {TINY_TRAIN}",
        "eval: action on held-out animals"),
    f"{PYTHON} -m data_prep.simulate --out_dir=/tmp/sim --num_animals=4 --trials_per_animal=2 "
    "--trial_seconds=30": (
        f"{PYTHON} -m data_prep.simulate --out_dir={{tmp}}/sim --num_animals=4 "
        "--trials_per_animal=2 --trial_seconds=30", "wrote"),
    f"{PYTHON} -m data_prep.build --input_dir=/tmp/sim --data_dir=/tmp/tfds": (
        f"{PYTHON} -m data_prep.build --input_dir={{tmp}}/sim --data_dir={{tfds}}", "animals: 4"),
    f"{PYTHON} -m experiments.train --config=swap_cpu --workdir=/tmp/nar/run "
    "--config.data.data_dir=/tmp/tfds --config.data.name=default": (
        f"{PYTHON} -m experiments.train --config=swap_cpu --workdir={{tmp}}/run {TINY_DATA} "
        f"{TINY_TRAIN}", "eval: action on held-out animals"),
    f"{PYTHON} -m experiments.train --config=swap_cpu --workdir=/tmp/nar/swap_cpu": (
        f"{PYTHON} -m experiments.train --config=swap_cpu --workdir={{tmp}}/swap_cpu "
        f"{TINY_DATA} {TINY_TRAIN}", "eval: action on held-out animals"),
    f"{PYTHON} -m experiments.train --config=baseline_cpu:simclr --workdir=/tmp/nar/simclr": (
        f"{PYTHON} -m experiments.train --config=baseline_cpu:simclr --workdir={{tmp}}/simclr "
        f"{TINY_DATA} {TINY_TRAIN}", "eval: action on held-out animals"),
    "make reproduce": (
        f"{PYTHON} -m experiments.reproduce --preset=smoke --seeds=1 --only=ours "
        "--skip_ablations --out={tmp}/reproduce", "Table 1: action recognition"),
    f"{PYTHON} -m experiments.reproduce --preset=cpu --seeds=1 --only=ours,simclr "
    "--skip_ablations --out=/tmp/r": (
        f"{PYTHON} -m experiments.reproduce --preset=smoke --seeds=1 --only=ours "
        "--skip_ablations --out={tmp}/reproduce", "Table 1: action recognition"),
    f"{PYTHON} -m experiments.report --runs_csv=results/pose_cpu/runs.csv": (
        f"{PYTHON} -m experiments.report --runs_csv=results/pose_cpu/runs.csv",
        "Ours against every other row"),
    f"{PYTHON} -m experiments.compare_runs --a=/tmp/run_before --b=/tmp/run_after": (
        f"{PYTHON} -m experiments.compare_runs --a={{tmp}}/run --b={{tmp}}/run_copy",
        "the same results"),
    f"{PYTHON} -m benchmarks.swap": (
        f"{PYTHON} -m benchmarks.swap --num_queries=64 --pool_size=512 --repeats=1 "
        "--numpy_repeats=1 --windows=4 --bank_animals=2 --bank_frames=256 --table_queries=32 "
        "--table_pool_size=512 --table_animals=2 --table_frames_per_animal=512",
        "numpy reference"),
}


# The section a new user follows with their own recordings: its commands run in order, as
# written (through bash, quotes included), with paths under /tmp/ moved into the test's folder
# and these flags appended to shrink the work; then its Python block.
OWN_DATA_SECTION = "## Your own data, start to finish"
OWN_DATA_TINY = {
    "-m data_prep.simulate": ("--trial_seconds=16", "wrote"),
    "-m data_prep.build": ("", "animals: 6"),
    "-m experiments.train": (
        "--config.optim.num_train_steps=2 --config.optim.warmup_steps=1 --config.eval.hop=40 "
        "--config.adapt.num_steps=2 --config.optim.global_batch_size=16",
        "eval: action on held-out animals"),
    "-m experiments.embed": ("--hop=4", "embedded"),
}


def section_text(heading: str) -> str:
  """The README's text from `heading` to the next heading of its level."""
  text = README.read_text()
  start = text.index(heading + "\n")
  following = re.search(r"^## ", text[start + len(heading):], flags=re.M)
  return text[start:start + len(heading) + following.start()] if following else text[start:]


def bash_commands(text: str) -> list[str]:
  """The command lines of the bash blocks of `text` (continuations joined, comments gone)."""
  blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
  commands = []
  for block in blocks:
    for line in block.replace("\\\n", " ").splitlines():
      line = re.sub(r"\s+#.*$", "", line).strip()
      if line and not line.startswith("#"):
        commands.append(re.sub(r"\s+", " ", line))
  return commands


def readme_commands() -> list[str]:
  """The README's commands, less those of the own-data section (run in order below)."""
  own = set(bash_commands(section_text(OWN_DATA_SECTION)))
  return [c for c in bash_commands(README.read_text()) if c not in own]


def test_every_readme_command_is_run_here_or_exempt_with_a_reason():
  commands = readme_commands()
  unknown = [c for c in commands if c not in COMMANDS and c not in EXEMPT]
  assert not unknown, f"README commands this test does not run: {unknown}"
  stale = [c for c in list(COMMANDS) + list(EXEMPT) if c not in commands]
  assert not stale, f"commands no longer in the README: {stale}"


def _run(command: str, workspace: pathlib.Path) -> str:
  command = command.format(tmp=workspace, tfds=workspace / "tfds")
  env = {**os.environ, "NAR_HOME": str(workspace / "nar_home"), "JAX_PLATFORMS": "cpu"}
  result = subprocess.run(command.split(), cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, check=False, timeout=600)
  assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
  return result.stdout + result.stderr


def _is_data_command(command: str) -> bool:
  return " -m data_prep." in command


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
  """A folder holding the tiny dataset that the README's data_prep commands make.

  Returns:
    `(folder, outputs)`: outputs maps each data_prep command to what it printed.
  """
  folder = tmp_path_factory.mktemp("readme")
  outputs = {c: _run(COMMANDS[c][0], folder) for c in readme_commands()
             if c in COMMANDS and _is_data_command(c)}
  return folder, outputs


@pytest.mark.parametrize("readme_command", [c for c in readme_commands() if c in COMMANDS])
def test_readme_command_runs(readme_command, workspace):
  folder, outputs = workspace
  command, expected = COMMANDS[readme_command]
  if _is_data_command(readme_command):
    output = outputs[readme_command]
  else:
    if " -m experiments.compare_runs" in readme_command:
      if not (folder / "run").exists():
        train = next(c for c in COMMANDS if "--workdir=/tmp/nar/run " in c)
        _run(COMMANDS[train][0], folder)
      shutil.copytree(folder / "run", folder / "run_copy", dirs_exist_ok=True)
    output = _run(command, folder)
  assert expected in output


def test_readme_python_block_runs(workspace):
  folder, _ = workspace
  text = README.read_text().replace(section_text(OWN_DATA_SECTION), "")
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  assert blocks
  code = "\n".join(blocks).replace("/tmp/tfds", str(folder / "tfds"))
  code += "\nbatch = next(iter(loader))\nprint(sorted(batch))\n"
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=False, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "'pose'" in result.stdout


@pytest.mark.parametrize("document", ["README.md", "docs/method.md", "docs/simulator.md",
                                      "docs/data_layout.md", "results/README.md"])
def test_relative_links_resolve(document):
  path = REPO_ROOT / document
  targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
  broken = [t for t in targets if not re.match(r"^[a-z]+://|^#", t)
            and not (path.parent / t.partition("#")[0]).exists()]
  assert not broken, f"{document} links to missing files: {broken}"


def _markdown_rows(text: str, after: str) -> list[list[str]]:
  """The cells of the first markdown table after the line starting with `after`."""
  lines = text[text.index(after):].splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("|"))
  rows = []
  for line in lines[start:]:
    if not line.startswith("|"):
      break
    rows.append([cell.strip().strip("*").strip() for cell in line.strip("|").split("|")])
  return [rows[0]] + rows[2:]  # without the |---| line


def test_the_headline_table_quotes_the_cpu_reproduction():
  readme = _markdown_rows(README.read_text(), "### Headline results")
  header, rows = readme[0], readme[1:]
  assert header == ["Method", "Multi-Animal 0.5", "Multi-Animal 1.0", "paper 1.0",
                    "Identity 1.0 ↓", "paper"]
  results = REPO_ROOT / "results" / "pose_cpu"
  action = _markdown_rows((results / "table1.md").read_text(), "## Accuracy")
  identity = _markdown_rows((results / "table2.md").read_text(), "## Accuracy")
  action_by_row = {row[0]: row for row in action[1:]}
  identity_by_row = {row[0]: row for row in identity[1:]}
  for method, multi_05, multi_10, paper_10, identity_10, identity_paper in rows:
    # table1: Method, Single 0.5, paper, Single 1.0, paper, Multi 0.5, paper, Multi 1.0, paper
    cells = action_by_row[method]
    assert [multi_05, multi_10, paper_10] == [cells[5], cells[7], cells[8]], method
    # table2: Method, Identity 0.5, paper, Identity 1.0, paper
    assert [identity_10, identity_paper] == identity_by_row[method][3:5], method
  assert len(rows) >= 5


def test_the_own_data_section_runs_start_to_finish(tmp_path):
  text = section_text(OWN_DATA_SECTION)
  assert len(text.splitlines()) <= 60, "the section is a short walk-through"
  commands = bash_commands(text)
  assert [next(k for k in OWN_DATA_TINY if k in c) for c in commands] == list(OWN_DATA_TINY)
  env = {**os.environ, "NAR_HOME": str(tmp_path / "nar_home"), "JAX_PLATFORMS": "cpu",
         "MPLBACKEND": "Agg"}
  for command in commands:
    flags, expected = next(v for k, v in OWN_DATA_TINY.items() if k in command)
    line = command.replace("/tmp/", f"{tmp_path}/") + " " + flags
    result = subprocess.run(["bash", "-c", line], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, check=False, timeout=600)
    assert result.returncode == 0, f"{line}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert expected in result.stdout + result.stderr, line
  assert (tmp_path / "own_embeddings" / "embeddings.png").exists()
  (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  result = subprocess.run([sys.executable, "-c", code.replace("/tmp/", f"{tmp_path}/")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "kNN" in result.stdout and "R²" in result.stdout
  assert (tmp_path / "own_embeddings" / "by_animal.png").exists()
