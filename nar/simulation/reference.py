"""The real measurements the simulator is grounded on, shipped in `nar/assets/`.

Sources and licences are listed in `nar/assets/LICENSES.md`.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources

import numpy as np

from nar.data import recording as recording_lib

BEHAVIOUR_BOUTS_FILE = "mc2p_flies_behaviour_bouts.csv"
WALKING_POSE_FILE = "fly_pose3d_walking_100hz.npz"
GROOMING_POSE_FILE = "fly_pose3d_grooming_100hz.npz"
GCAMP_KERNELS_FILE = "gcamp_kernels_1ms.npz"

# Frame rate of the annotations and of the reference poses.
REFERENCE_FPS = 100.0


def asset_path(name: str):
  """A readable path (a `Traversable`) to a file of `nar/assets/`."""
  return importlib.resources.files("nar").joinpath("assets", name)


@functools.lru_cache(maxsize=None)
def behaviour_bouts() -> dict[str, np.ndarray]:
  """The real MC2P annotations, one row per bout, in file order.

  Returns:
    `recording` `[B]` int64 index of the (fly, trial) the bout belongs to, `start` and `end`
    `[B]` int64 frames at 100 Hz (end exclusive), `label` `[B]` int64 index into
    `nar.data.recording.MC2P_CLASS_NAMES`.
  """
  with asset_path(BEHAVIOUR_BOUTS_FILE).open("r", newline="") as f:
    rows = list(csv.DictReader(f))
  keys = {}
  recording, start, end, label = [], [], [], []
  for row in rows:
    key = (row["fly"], int(row["trial"]))
    recording.append(keys.setdefault(key, len(keys)))
    start.append(int(row["start_frame"]))
    end.append(int(row["end_frame"]))
    label.append(recording_lib.MC2P_CLASS_NAMES.index(row["behaviour"]))
  arrays = dict(recording=recording, start=start, end=end, label=label)
  return {k: np.asarray(v, np.int64) for k, v in arrays.items()}


@functools.lru_cache(maxsize=None)
def reference_pose(kind: str) -> np.ndarray:
  """Real body-aligned 3D leg pose at 100 Hz.

  Args:
    kind: "walking" (10 s) or "grooming" (9 s of optogenetically induced head grooming).

  Returns:
    `[T, 6 legs (RF, RM, RH, LF, LM, LH), 5 joints (body-coxa ... tarsus tip), 3]` float64,
    in mm; x points forward, y to the left, z up.
  """
  files = {"walking": WALKING_POSE_FILE, "grooming": GROOMING_POSE_FILE}
  with asset_path(files[kind]).open("rb") as f:
    pose = np.load(f)["pose"].astype(np.float64)
  pose.setflags(write=False)
  return pose


@functools.lru_cache(maxsize=None)
def gcamp_kernel(indicator: str = "gcamp6s") -> np.ndarray:
  """`[K]` float64 ΔF/F response to one spike, sampled every 1 ms from the spike."""
  with asset_path(GCAMP_KERNELS_FILE).open("rb") as f:
    kernel = np.load(f)[indicator].astype(np.float64)
  kernel.setflags(write=False)
  return kernel
