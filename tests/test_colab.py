"""The Colab notebooks run top to bottom (tiny settings, CPU) and plot."""

import ast
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICKSTART = REPO_ROOT / "colab" / "nar_quickstart.ipynb"
YOUR_DATA = REPO_ROOT / "colab" / "nar_your_data.ipynb"

# Injected after the notebook's "parameters" cell (as papermill does): a tiny simulated
# dataset and model, a few steps.
TINY_PARAMETERS = """
SIMULATOR_SETTINGS = dict(num_animals=4, trials_per_animal=2, trial_seconds=16.0, image_size=16)
DATASET_NAME = "notebook_tiny"
CONFIG_OVERRIDES = {
    "optim.num_train_steps": 4, "optim.warmup_steps": 1, "optim.global_batch_size": 16,
    "log_every_steps": 2, "checkpoint_every_steps": 2, "eval.hop": 10,
    "model.width": 8, "model.num_blocks": 1, "model.features": 8, "model.head_hidden": 16,
    "model.embedding": 8, "model.image_channels": (4,), "swap.pool_chunk": 256,
}
"""

# Appended: what the notebook's last cells must have produced.
QUICKSTART_CHECKS = """
from matplotlib import figure as figure_lib
assert results["probes"]["identity"]["1.0"]["accuracy"]["mean"] >= 0
assert len(steps) == 2 and steps[-1] == 4, steps
drawn = {held_out.animals[i] for i in set(held_out.animal.tolist())}
assert drawn and drawn <= set(results["held_out_animals"]), drawn
figures = [shown for shown in DISPLAYED.values() if isinstance(shown, figure_lib.Figure)]
assert len(figures) == 3, DISPLAYED  # loss curve, embedding, confusion matrix
print("NOTEBOOK OK")
"""


# The own-data notebook: four simulated flies on a ball, two steps, tiny model.
YOUR_DATA_PARAMETERS = """
SIMULATOR_SETTINGS = dict(num_animals=4, trials_per_animal=2, trial_seconds=12.0)
CONFIG_OVERRIDES = {
    "optim.num_train_steps": 2, "optim.warmup_steps": 1, "optim.global_batch_size": 16,
    "adapt.num_steps": 2, "eval.hop": 40, "log_every_steps": 1, "checkpoint_every_steps": 2,
    "model.width": 8, "model.features": 8, "model.head_hidden": 16, "model.embedding": 8,
}
"""

YOUR_DATA_CHECKS = """
from matplotlib import figure as figure_lib
assert run.step == 2 and run.held_out_animals == held_out == tuple(dataset.animals[-2:])
assert summary["num_trials"] == 8 and table["embeddings"].shape[1] == 8
assert set(decoding) == {"linear", "kNN", "ridge"}, decoding
assert 0 <= decoding["kNN"]["accuracy"] <= 100
assert len(decoding["ridge"]["r2_per_dimension"]) == 3  # the three ball velocities
figures = [shown for shown in DISPLAYED.values() if isinstance(shown, figure_lib.Figure)]
assert len(figures) == 1, DISPLAYED
print("NOTEBOOK OK")
"""

NOTEBOOKS = {
    "quickstart": (QUICKSTART, TINY_PARAMETERS, QUICKSTART_CHECKS),
    "your_data": (YOUR_DATA, YOUR_DATA_PARAMETERS, YOUR_DATA_CHECKS),
}


def _cells(notebook_path=QUICKSTART):
  notebook = json.loads(notebook_path.read_text())
  assert notebook["nbformat"] == 4
  return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_code_cell_is_valid_python_without_outputs(name):
  for cell in _cells(NOTEBOOKS[name][0]):
    ast.parse("".join(cell["source"]))
    assert not cell["outputs"] and cell["execution_count"] is None  # stored clean


def _displaying_last_expression(source: str, index: int) -> str:
  """The cell's code, its last expression (what Jupyter displays) kept in `DISPLAYED`."""
  tree = ast.parse(source)
  if tree.body and isinstance(tree.body[-1], ast.Expr):
    target = ast.parse(f"DISPLAYED[{index}] = None").body[0]
    target.value = tree.body[-1].value
    tree.body[-1] = target
  return ast.unparse(tree)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path):
  path, parameters, checks = NOTEBOOKS[name]
  script = []
  for index, cell in enumerate(_cells(path)):
    script.append(_displaying_last_expression("".join(cell["source"]), index))
    if "parameters" in cell.get("metadata", {}).get("tags", []):
      script.append(parameters + f"WORKDIR = {str(tmp_path / 'run')!r}\n"
                    f"WORK_DIR = {str(tmp_path / 'work')!r}\n")
  script.insert(0, "DISPLAYED = {}\n")
  script.append(checks)
  script_path = tmp_path / "notebook.py"
  script_path.write_text("\n".join(script))
  result = subprocess.run(
      [sys.executable, str(script_path)], cwd=tmp_path, capture_output=True, text=True,
      check=False, env={**os.environ, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg",
                        "NAR_HOME": str(tmp_path / "nar_home"),
                        "PYTHONPATH": os.pathsep.join(
                            filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))})
  assert result.returncode == 0, result.stderr[-4000:]
  assert "NOTEBOOK OK" in result.stdout
  assert "identity" in result.stdout  # the printed evaluation
