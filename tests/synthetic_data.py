"""Small synthetic recordings for tests of shards, pipeline and training."""

import numpy as np

from nar.data import recording as recording_lib

# The name of the locomotion dataset the `locomotion_data_dir` fixture builds.
LOCOMOTION_DATASET_NAME = "locomotion"


def recording(animal: int, trial: int, num_frames: int, rng) -> recording_lib.Recording:
  """A small recording with jittered neural frame times and some missing keypoints."""
  fps_neural = 16.0 * (1 + 0.03 * rng.standard_normal())
  num_neural = int(num_frames / 100.0 * fps_neural) + 1
  neural_times = np.cumsum(np.full(num_neural, 1 / fps_neural) *
                           (1 + 0.05 * rng.uniform(-1, 1, num_neural))) - 1 / fps_neural
  behaviour_times = np.arange(num_frames) / 100.0
  sync = np.clip(np.searchsorted(neural_times, behaviour_times, side="right") - 1, 0,
                 num_neural - 1).astype(np.int64)
  pose = rng.normal(size=(num_frames, 38, 3)).astype(np.float32) + animal
  pose[rng.integers(0, num_frames, 5), rng.integers(0, 38, 5)] = np.nan
  labels = rng.integers(-1, 7, num_frames).astype(np.int32)
  return recording_lib.Recording(
      animal_id=f"200101_Test_Fly{animal}", trial_id=f"00{trial}", behaviour=pose, sync=sync,
      labels=labels, fps_neural=fps_neural,
      neural_images=rng.normal(size=(num_neural, 6, 5)).astype(np.float32),
      roi_traces=rng.normal(size=(num_neural, 3)).astype(np.float32),
      neural_timestamps=neural_times)
