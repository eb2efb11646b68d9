"""Contrastive training of the neural and behaviour encoders; re-exports its entry points."""

from nar.train.loop import *  # noqa: F401,F403
from nar.train.loop import _augmentations, _augmented_views, _draws_second_neural_view  # noqa: F401
