"""Entry points (train, demo, reproduce, report, compare_runs) and their configs."""
