"""Reading a run's metrics log back."""

import json

from etils import epath
import pytest

from nar import logs


def test_read_metric_curve_keeps_the_lines_that_hold_the_metric(tmp_path):
  path = tmp_path / logs.METRICS_FILE
  lines = [{"step": 2, "loss": 3.0}, {"step": 3, "eval": 1.0}, {"step": 4, "loss": 2.5}]
  path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")
  steps, values = logs.read_metric_curve(path)
  assert steps.tolist() == [2, 4] and values.tolist() == [3.0, 2.5]
  steps, values = logs.read_metric_curve(path, "eval")
  assert steps.tolist() == [3] and values.tolist() == [1.0]
  assert logs.read_metric_curve(path, "absent") is None
  assert logs.read_metric_curve(tmp_path / "missing.jsonl") is None


def test_a_resumed_log_reads_in_step_order_with_the_latest_entry_of_each_step(tmp_path):
  path = tmp_path / logs.METRICS_FILE
  # Logged to step 60, resumed from a checkpoint at step 20, interrupted mid-line once.
  lines = [{"step": s, "loss": float(s)} for s in (20, 40, 60)]
  lines += [{"step": s, "loss": s + 0.5} for s in (40, 60, 80)]
  text = "".join(json.dumps(line) + "\n" for line in lines)
  path.write_text(text + '{"step": 100, "lo')
  steps, values = logs.read_metric_curve(path)
  assert steps.tolist() == [20, 40, 60, 80]
  assert values.tolist() == [20.0, 40.5, 60.5, 80.5]


def test_json_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
  path = tmp_path / "eval.json"
  logs.write_json_atomically(path, {"a": 1})
  assert json.loads(path.read_text()) == {"a": 1}
  logs.write_json_atomically(path, {"a": 2})  # a rerun replaces the earlier result
  assert json.loads(path.read_text()) == {"a": 2}
  assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]

  def interrupted(self, *args, **kwargs):
    raise KeyboardInterrupt
  monkeypatch.setattr(type(epath.Path(path)), "replace", interrupted)
  with pytest.raises(KeyboardInterrupt):
    logs.write_json_atomically(tmp_path / "other.json", {"b": 2})
  assert not (tmp_path / "other.json").exists()
