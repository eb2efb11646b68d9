"""Reading a run's metrics log back."""

import json

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
