"""NAR's experiment config: every field with its default (`make_config`), and overrides.

Named configs (`experiments/configs/`) start from `make_config()` and change a few fields;
`nar.NAREstimator` starts from it too.
"""

from __future__ import annotations

from typing import Any, Mapping

import ml_collections


def make_config() -> ml_collections.ConfigDict:
  """The defaults: contrastive training with the swap on a small dataset.

  Example:
    >>> config = make_config()
    >>> config.method, config.swap.enabled, config.data.neural_key
    ('contrastive', True, 'neural_images')
  """
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.data_dir = ""  # TFDS data dir, or a built dataset's directory
  config.data.name = "default"
  # Simulate and build the default dataset into data_dir when it is absent.
  config.data.simulate_if_missing = False
  config.data.num_held_out_animals = 2
  config.data.split_seed = 0
  # Held-out animals by name, e.g. ("fly_a", "fly_b"); when given they win over the draw of
  # num_held_out_animals animals by split_seed.
  config.data.held_out_animals = ()
  # Train on only this many of the animals that are not held out, drawn by split_seed; the
  # others are left out of training, of the swap pool and of every probe (how the swap's
  # effect depends on the number of training animals). None: every animal not held out.
  config.data.num_training_animals = ml_collections.config_dict.placeholder(int)
  config.data.window = ml_collections.ConfigDict(
      dict(pose_frames=32, pose_stride=3, neural_frames=16))
  config.data.neural_key = "neural_images"  # or "roi_traces"
  # Each animal's neural input standardised per pixel (ROI) with its own statistics, fitted
  # without labels on the first part of every trial ("none": as stored; see
  # nar/data/normalise.py). The calibration must end before the identity probe's test
  # block (the last of eval.identity_time_blocks); None: every block before it.
  config.data.neural_normalisation = "animal"
  # A placeholder, so that a float can be set from the command line.
  config.data.neural_calibration_fraction = ml_collections.config_dict.placeholder(float)
  # Self-supervised training needs no labels; MC2P's loader drops resting windows.
  config.data.drop_classes = ("resting",)
  config.data.drop_unlabelled = False
  config.data.worker_count = 0
  # Decoded neural segments kept in memory per process; small datasets are read once.
  config.data.neural_cache_mb = 2048
  config.data.preload_neural = True
  # Where the training windows come from (nar/data/device.py): "device" places the frames
  # they read on every device and the step gathers its batches there; "host": grain reads
  # the windows every step; "auto": "device" when the frames fit in device_memory_fraction of
  # a device's memory.
  config.data.input_path = "auto"
  config.data.device_memory_fraction = 0.25

  config.model = ml_collections.ConfigDict()
  config.model.width = 64
  config.model.num_blocks = 2
  config.model.features = 64
  # Feature size of the baselines made from this config (`baselines.apply_baseline`) where it
  # differs from Ours'; None: the same as Ours.
  config.model.baseline_features = ml_collections.config_dict.placeholder(int)
  config.model.head_hidden = 128
  config.model.embedding = 64
  config.model.projection = "mlp"  # or "linear", "none" (see nar.models.ProjectionHead)
  config.model.image_channels = (16, 32, 64)
  # "flatten" keeps where active axons lie (their type, where positions are stereotyped);
  # "mean" pools it away (see nar.models.ImageSequenceEncoder).
  config.model.spatial_pooling = "flatten"
  config.model.dtype = "float32"  # "bfloat16" on accelerators
  # ROI traces: "per_animal" (an input layer per animal feeding a shared trunk), "shared" (one
  # encoder), or "auto": per-animal when the animals' ROI counts differ. Images: shared.
  config.model.neural_input = "auto"

  # "contrastive" (ours; the no-swap ablation with swap.enabled=False), or a baseline:
  # "simclr", "regression", "behavenet" (see nar/method/objectives.py).
  config.method = "contrastive"
  config.regression_decoder = "conv"  # or "recurrent"
  config.behavenet_states = 12
  # "mmd", "grl" or "moments" (per-animal feature means and stds, objectives.py).
  config.domain_penalty = "none"
  config.domain_penalty_weight = 1.0
  # Contrastive only: weight of the penalty on the share of each neural feature's variance that
  # a linear map of the (swapped) behaviour features cannot explain
  # (`nar.method.objectives.unexplained_variance`); 0 is the seed's objective.
  config.behaviour_residual_weight = 0.0
  # Contrastive only: weight of SimCLR's objective between two augmented views of each neural
  # window, added to the behaviour-neural one; 0 is the seed's objective.
  config.neural_view_weight = 0.0
  # Contrastive only: weight of an InfoNCE term whose negatives are the windows of the query's
  # own animal (`nar.method.losses.same_animal_infonce_loss`): the animal then cannot tell a
  # pair from a negative. 0 is the seed's objective.
  config.same_animal_negatives_weight = 0.0
  # Contrastive with the swap only: weight of an InfoNCE term pairing each neural window with
  # that of its swap partner, the batch's behaviour-nearest window of another animal
  # (`nar.method.losses.partner_infonce_loss`; swap.neural_partner_quantile keeps only the
  # closest pairs). 0 is the seed's objective.
  config.partner_positive_weight = 0.0

  config.swap = ml_collections.ConfigDict()
  config.swap.enabled = True
  config.swap.probability = 0.5
  config.swap.temperature = 1.0
  config.swap.mode = "exact"  # or "topk": draw from a precomputed table of K neighbours
  config.swap.topk = 64
  config.swap.per_frame_target = False
  # The neural half of the swap (nar/method/neural_swap.py): the probability that a window's neural
  # data is exchanged for that of the batch's behaviour-nearest window of another animal.
  config.swap.neural_probability = 0.0
  # Only windows whose partner is among the batch's closest (this quantile of the partner
  # distances) are exchanged; 1.0: any window.
  config.swap.neural_partner_quantile = 1.0
  # The swap probabilities over training (nar/method/swap_schedule.py): "constant", "ramp"
  # (linear from 0 over the first schedule_fraction of the steps) or "delayed" (off for it).
  config.swap.schedule = "constant"
  config.swap.schedule_fraction = 0.5
  config.swap.pool_chunk = 2048
  # The swap draws from every pool_stride-th frame of the target animal (1: all of them);
  # the top-K table then holds neighbours of those frames only. See benchmarks/README.md for
  # what thinning saves per step.
  config.swap.pool_stride = 1
  # How the exact swap finds its draws (the same distribution either way): "scan" computes
  # the distance to every frame of the target animal (nar/method/swap.py), "cells" rejects
  # from bounding boxes of cells of cell_size frames (nar/method/swap_cells.py), far less work
  # for behaviour of few dimensions; "auto": cells for at most swap_cells.MAX_CELL_DIM
  # dimensions (ball velocities), scan otherwise (pose).
  config.swap.kernel = "auto"
  config.swap.cell_size = 256

  config.augment = ml_collections.ConfigDict()
  config.augment.pose_enabled = True
  config.augment.pose = ml_collections.ConfigDict(dict(
      smoothing_sigma=1.0, jitter_std=0.05, scale=0.1, shear=0.05, rotation_deg=10.0,
      mirror_probability=0.0, time_mask_frames=4, channel_mask_probability=0.05))
  config.augment.neural_enabled = True
  config.augment.neural = ml_collections.ConfigDict(dict(
      shot_noise_std=0.05, blur_sigma=0.7, shift_pixels=2, rotation_deg=15.0, zoom=0.1,
      gain=0.2, offset=0.1,
      calcium_tau_frames=1.0, frame_shift=1, erase_fraction=0.25, mix_weight=0.1,
      local_gain=0.0))

  config.optim = ml_collections.ConfigDict()
  config.optim.global_batch_size = 128
  config.optim.num_train_steps = 1000
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 50
  config.optim.weight_decay = 1e-4
  config.optim.grad_clip = 1.0
  # A step whose loss or gradients are not finite: "stop" ends training (no checkpoint holds
  # non-finite parameters), "skip" leaves the parameters as they were and goes on.
  config.optim.nan_policy = "stop"
  # InfoNCE temperature of the multimodal objective (Ours, no swap). On the default simulated
  # dataset 0.5 transferred to held-out animals better than 0.05, 0.1 or 1.0 (the cpu
  # preset's seed-0 run, 300 steps: 32 / 35 / 42 / 40 % multi-animal; results/README.md gives
  # the command). SimCLR keeps its own (baselines.py).
  config.optim.temperature = 0.5

  config.eval = ml_collections.ConfigDict()
  # False: no probes after training (e.g. recordings without labels); eval.json then holds
  # the training metrics only.
  config.eval.enabled = True
  config.eval.hop = 10
  config.eval.batch_size = 256
  config.eval.drop_classes = ("resting",)
  config.eval.identity_time_blocks = 4
  config.eval.label_fractions = (0.5, 1.0)
  config.eval.probe_seeds = (0,)
  config.eval.single_animal_split = "time_blocks"  # or "trials"
  config.eval.rotate_test_split = False  # True: k-fold over blocks / trials
  # "animal": every animal's features standardised with its own mean and spread before the
  # probes, fitted without labels on the time blocks before the identity probe's test block
  # (nar.eval.features.build_feature_table); "none": the encoder's features as they are.
  config.eval.feature_normalisation = "none"

  # With a per-animal input layer: after training, the held-out animals' input layers are
  # fitted without labels (trunk, heads and behaviour encoder frozen) before the evaluation
  # (nar.train.fit_input_layers); 0 steps leaves them as initialised.
  config.adapt = ml_collections.ConfigDict()
  config.adapt.num_steps = 200
  config.adapt.learning_rate = 1e-2

  config.log_every_steps = 20
  # Every this many steps, and at the last step whatever the interval.
  config.checkpoint_every_steps = 200
  config.keep_checkpoints = 2
  return config


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any], *,
                    what: str = "overrides") -> ml_collections.ConfigDict:
  """Sets `{"dotted.field": value}` fields of a config (in place) and returns it.

  Raises:
    ValueError: a field is not in the config (a misspelt override would silently add one).
  """
  for field in overrides:
    *parents, leaf = field.split(".")
    node = config
    for part in parents:
      node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ValueError(f"{what} sets {field!r}, which is not a config field")
  config.update_from_flattened_dict(dict(overrides))
  return config
