"""Frozen features to scores: the probes, the evaluation protocol and its figures."""
