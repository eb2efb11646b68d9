"""Errors of the recording readers, and reading many trials with every failure reported.

A dataset conversion must never go on with part of the data: `read_all` reads every trial,
keeps every trial's error, and raises one `DatasetReadError` listing all of them.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence, TypeVar

import tqdm

from nar import recording

Item = TypeVar("Item")


class DatasetReadError(recording.RecordingError):
  """One or more trials of a dataset could not be read, or they do not form one dataset.

  Attributes:
    source: the dataset folder.
    problems: one line per problem, each starting with the trial it concerns.
    trial_errors: the error of every bad trial, keyed by the trial (folder or file).
  """

  def __init__(self, source: str, problems: Sequence[str],
               trial_errors: Mapping[str, recording.RecordingError] | None = None):
    self.trial_errors = dict(trial_errors or {})
    super().__init__(source, problems)


def file_error(path: str | os.PathLike, problem: str) -> recording.RecordingError:
  """A one-problem error about one file; the file is the error's source."""
  return recording.RecordingError(str(path), [problem])


def read_all(items: Sequence[Item], read_one: Callable[[Item], recording.Recording], *,
             source: str, desc: str = "Reading trials") -> list[recording.Recording]:
  """Reads every item and checks that the recordings form one dataset.

  Args:
    items: the trials to read (folders or files).
    read_one: reads one item; raises `RecordingError` (or `OSError`) when it cannot.
    source: the dataset's name in error messages (its folder).
    desc: label of the progress bar.

  Returns:
    The recordings, in the order of `items`.

  Raises:
    DatasetReadError: listing every bad item with its problems, or the problems of the set
      (duplicate (animal, trial) pairs, differing class names or image sizes). No partial
      list is ever returned.
  """
  recordings = []
  trial_errors: dict[str, recording.RecordingError] = {}
  for item in tqdm.tqdm(items, desc=desc, unit="trial"):
    try:
      recordings.append(read_one(item))
    except recording.RecordingError as error:
      trial_errors[str(item)] = error
    except OSError as error:
      trial_errors[str(item)] = recording.RecordingError(str(item), [f"cannot be read: {error}"])
  if trial_errors:
    problems = []
    for item, error in trial_errors.items():
      where = item if error.source == item else f"{item}: {error.source}"
      problems.extend(f"{where}: {problem}" for problem in error.problems)
    header = f"{len(trial_errors)} of {len(items)} trial(s) could not be read"
    raise DatasetReadError(f"{source} ({header})", problems, trial_errors)
  try:
    recording.check_recording_set(recordings, source=source)
  except recording.RecordingError as error:
    raise DatasetReadError(error.source, error.problems) from None
  return recordings
