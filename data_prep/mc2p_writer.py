"""Writing the MC2P folder layout: one trial folder per `Recording`, as `data_prep.mc2p` reads
it back.

The layout's file names and patterns are `data_prep.mc2p`'s; `data_prep/README.md` lists them.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import pickle
from typing import Any

import numpy as np
import tifffile

from data_prep import mc2p
from nar.data import recording

NEURAL_IMAGE_FORMATS = ("npy", "mm", "tif")


def trial_folder_name(animal_id: str, trial_id: str) -> str:
  """The folder name `<animal_id>_<trial_id>` of a trial, after checking both parts.

  Raises:
    ValueError: if `animal_id` is not `<date>_<genotype>_Fly<N>` (date: 6 digits) or
      `trial_id` is not made of digits.
  """
  problems = []
  if not isinstance(animal_id, str) or not mc2p.ANIMAL_ID_PATTERN.match(animal_id):
    problems.append(f"animal_id {animal_id!r} is not of the form <date>_<genotype>_Fly<N> "
                    "(date: 6 digits, e.g. '200901_G23xU1_Fly1')")
  if not isinstance(trial_id, str) or not mc2p.TRIAL_ID_PATTERN.match(trial_id):
    problems.append(f"trial_id {trial_id!r} is not made of digits (e.g. '001')")
  if problems:
    raise ValueError("cannot name an MC2P trial folder: " + "; ".join(problems))
  return f"{animal_id}_{trial_id}"


def write_trial(rec: recording.Recording, root_dir: str | os.PathLike, *,
                neural_image_format: str = "npy") -> pathlib.Path:
  """Writes one trial in the MC2P layout, as `data_prep.mc2p.read_trial` reads it back.

  Writes, in `<root_dir>/<animal_id>_<trial_id>/`: `pose_result.pkl` (DeepFly3D-style pickle
  with `points3d` `[T_b, 38, 3]` float64), the ΔF/F stack `dff.npy` (or `dff.mm` / `dff.tif`,
  float32), `sync_indices.npy` (int64), `behaviour_labels.csv` (bouts), `metadata.json`
  (frame rates, class names, image shape), and when the recording has them `roi_traces.npy`,
  `rest.npy`, `keypoint_mask.npy` (only where it differs from the finiteness of the pose),
  `behaviour_timestamps.npy` and `neural_timestamps.npy`.

  Args:
    rec: the recording; its `animal_id` must be `<date>_<genotype>_Fly<N>` and its
      `trial_id` digits, and its behaviour DeepFly3D pose.
    root_dir: folder to write the trial folder into (created if missing).
    neural_image_format: file format of the ΔF/F stack, one of "npy", "mm", "tif".

  Returns:
    The trial folder written.

  Raises:
    ValueError: if the ids do not fit the folder pattern, the behaviour is not DeepFly3D
      pose, or the format is unknown.
    FileExistsError: if the trial folder already exists and is not empty.
  """
  folder_name = trial_folder_name(rec.animal_id, rec.trial_id)
  if rec.behaviour_format != "deepfly3d_pose":
    raise ValueError(f"the MC2P layout holds DeepFly3D pose, not {rec.behaviour_format!r} "
                     f"({rec.name})")
  if neural_image_format not in NEURAL_IMAGE_FORMATS:
    raise ValueError(f"neural_image_format must be one of {NEURAL_IMAGE_FORMATS}, "
                     f"got {neural_image_format!r}")
  folder = pathlib.Path(root_dir) / folder_name
  if folder.exists() and any(folder.iterdir()):
    raise FileExistsError(f"{folder} exists and is not empty")
  folder.mkdir(parents=True, exist_ok=True)

  # DeepFly3D itself pickles float64 points.
  with open(folder / "pose_result.pkl", "wb") as f:
    pickle.dump({"points3d": np.asarray(rec.behaviour, np.float64)}, f,
                protocol=pickle.HIGHEST_PROTOCOL)
  metadata: dict[str, Any] = {
      "fps_behaviour": float(rec.fps_behaviour),
      "fps_neural": float(rec.fps_neural),
      "class_names": list(rec.class_names),
  }
  if rec.neural_images is not None:
    images = np.asarray(rec.neural_images, np.float32)
    metadata["neural_image_shape"] = list(images.shape[1:])
    if neural_image_format == "npy":
      np.save(folder / "dff.npy", images)
    elif neural_image_format == "mm":
      np.ascontiguousarray(images).tofile(folder / "dff.mm")
    else:
      tifffile.imwrite(folder / "dff.tif", images)
  np.save(folder / mc2p.SYNC_NAMES[0], np.asarray(rec.sync, np.int64))
  if rec.roi_traces is not None:
    np.save(folder / mc2p.ROI_TRACES_NAME, np.asarray(rec.roi_traces, np.float32))
  if rec.rest is not None:
    np.save(folder / mc2p.REST_NAME, np.asarray(rec.rest, np.bool_))
  finite = np.isfinite(rec.behaviour).all(axis=-1)
  if rec.keypoint_mask is not None and not np.array_equal(rec.keypoint_mask, finite):
    np.save(folder / mc2p.KEYPOINT_MASK_NAME, np.asarray(rec.keypoint_mask, np.bool_))
  if rec.behaviour_timestamps is not None:
    np.save(folder / mc2p.BEHAVIOUR_TIMESTAMPS_NAME, np.asarray(rec.behaviour_timestamps))
  if rec.neural_timestamps is not None:
    np.save(folder / mc2p.NEURAL_TIMESTAMPS_NAME, np.asarray(rec.neural_timestamps))

  with open(folder / mc2p.LABEL_BOUT_NAMES[0], "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(mc2p.BOUT_COLUMNS)
    for start, end, label in recording.label_bouts(rec.labels):
      writer.writerow((start, end, rec.class_names[label]))
  (folder / mc2p.METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n")
  return folder
