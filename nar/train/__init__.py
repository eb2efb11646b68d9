"""Contrastive training of the neural and behaviour encoders, and what a run is made of.

Modules: `inputs` (config x dataset -> the run's data side), `step` (views, objective,
jitted sharded step, optimiser), `adapt` (input layers of new animals), `validate` (checks
before compilation) and `loop` (the job: `train_and_evaluate`). The names below are the ones
the entry points, notebooks and benchmarks use.
"""

from nar.train.adapt import fit_input_layers
from nar.train.adapt import fit_windows
from nar.train.inputs import create_input
from nar.train.inputs import Input
from nar.train.loop import evaluate
from nar.train.loop import summary_line
from nar.train.loop import train_and_evaluate
from nar.train.step import compile_train_step
from nar.train.step import create_step_constants
from nar.train.step import create_train_state
from nar.train.step import keep_animal_rows
from nar.train.step import make_mesh
from nar.train.step import run_keys
from nar.train.step import step_batch
from nar.train.step import swap_kernel
from nar.train.step import TrainState

__all__ = [
    "Input", "TrainState", "compile_train_step", "create_input", "create_step_constants",
    "create_train_state", "evaluate", "fit_input_layers", "fit_windows", "keep_animal_rows",
    "make_mesh", "run_keys", "step_batch", "summary_line", "swap_kernel", "train_and_evaluate",
]
