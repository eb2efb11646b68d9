"""Recordings to TFDS shards: the readers of each layout, the builder and their entry points."""
