"""Named configs: `get_config(arg)` files for `--config=NAME[:ARG]` of the entry points."""
