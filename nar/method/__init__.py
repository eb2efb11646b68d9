"""The method's ideas as pure functions: the swaps, augmentations and objectives."""
