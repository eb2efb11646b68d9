"""Errors of the recording readers, and reading many trials with every failure reported.

A dataset conversion must never go on with part of the data: `read_all` reads every trial,
keeps every trial's error, and raises one `DatasetReadError` listing all of them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Callable, Mapping, Sequence, TypeVar

import tqdm

from nar.data import recording

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


def find_files(root: str | os.PathLike, suffixes: Sequence[str], what: str, *,
               required: bool = True) -> list[pathlib.Path]:
  """Every file under `root` (recursively) whose suffix is one of `suffixes`, sorted by path.

  Args:
    root: the folder to search.
    suffixes: lower-case suffixes with their dot (a file's suffix is compared in lower case).
    what: what such a file is, for the error message (e.g. "trial file").
    required: whether finding none is an error.

  Raises:
    RecordingError: if `root` is not a folder, or holds no such file and `required`.
  """
  root = pathlib.Path(root)
  if not root.is_dir():
    raise file_error(root, "is not a folder")
  files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
  if not files and required:
    raise file_error(root, f"holds no {what} ({', '.join('*' + s for s in suffixes)})")
  return files


def adopt_class_names(recordings: Sequence[recording.Recording],
                      names_classes: Sequence[bool]) -> list[recording.Recording]:
  """Gives the trials that name no behaviour classes the vocabulary of those that do.

  A trial stored without class names and without labels is read with the default
  `recording.MC2P_CLASS_NAMES`, but every frame of it is unlabelled, so any vocabulary fits
  it. Without this, such a trial could not join a dataset of another vocabulary.

  Args:
    recordings: the recordings of a dataset.
    names_classes: for each recording, whether its files name its classes (or label it).

  Returns:
    The recordings, those that name no classes with the class names of the others when
    these agree on one vocabulary. Otherwise unchanged (`check_recording_set` reports the
    disagreement).
  """
  named = {rec.class_names for rec, names in zip(recordings, names_classes) if names}
  if len(named) != 1:
    return list(recordings)
  (vocabulary,) = named
  return [rec if names or rec.class_names == vocabulary
          else dataclasses.replace(rec, class_names=vocabulary)
          for rec, names in zip(recordings, names_classes)]


def read_all(items: Sequence[Item],
             read_one: Callable[[Item], tuple[recording.Recording, bool]], *,
             source: str, desc: str = "Reading trials") -> list[recording.Recording]:
  """Reads every item and checks that the recordings form one dataset.

  Args:
    items: the trials to read (folders or files).
    read_one: reads one item into its recording and whether the item names its behaviour
      classes (those that do not take the vocabulary of the others, `adopt_class_names`);
      raises `RecordingError` (or `OSError`) when it cannot.
    source: the dataset's name in error messages (its folder).
    desc: label of the progress bar.

  Returns:
    The recordings, in the order of `items`.

  Raises:
    DatasetReadError: listing every bad item with its problems, or the problems of the set
      (duplicate (animal, trial) pairs, differing class names or image sizes). No partial
      list is ever returned.
  """
  recordings, names_classes = [], []
  trial_errors: dict[str, recording.RecordingError] = {}
  for item in tqdm.tqdm(items, desc=desc, unit="trial"):
    try:
      rec, names = read_one(item)
      recordings.append(rec)
      names_classes.append(names)
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
  recordings = adopt_class_names(recordings, names_classes)
  try:
    recording.check_recording_set(recordings, source=source)
  except recording.RecordingError as error:
    raise DatasetReadError(error.source, error.problems) from None
  return recordings
