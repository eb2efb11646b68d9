r"""The exact pose swap for low-dimensional behaviour: rejection from bounding boxes of cells.

The swap of seed eq. 2 draws frame l of the target animal ŝ with P(l) ∝ w_l = exp(-d_l / T),
d_l = ||b_l - q|| (weighted per feature as the bank's `distance_scale` says). The streamed
kernel (`nar.method.swap`) computes every d_l, which for a few behaviour dimensions (ball
velocities, D = 3) costs far more than the distances are worth: the work is dominated by the
pool's length, not by D. Here the pool of every animal is cut once, on the host, into cells of
at most `cell_size` frames by a k-d split (halving along the widest dimension), and each cell
keeps its bounding box. For a query q the box gives a lower bound d_c <= d_l for every frame of
cell c, so u_c = exp(-d_c / T) bounds the weight of its frames from above. The draw is
rejection sampling against that envelope:

  1. propose cell c with probability n_c u_c / sum_c' n_c' u_c' (n_c: frames of the cell),
  2. propose a frame l of c uniformly,
  3. accept it with probability w_l / u_c = exp(-(d_l - d_c) / T), else go back to 1.

An accepted frame has density ∝ n_c u_c · (1 / n_c) · w_l / u_c = w_l: the exact distribution
of eq. 2 over every valid frame of ŝ, whatever the cells. The work per query is one box
distance per cell (the pool length over `cell_size`) plus a few proposals; how few depends on
how tight the boxes are against T: the acceptance rate is sum_l w_l / sum_c n_c u_c.

Each round draws `proposals` candidates per query that has none accepted yet and keeps the
first accepted; rounds repeat until every query has one or `max_rounds` is reached. A query
still without one then takes its frame from the streamed kernel. That fallback is exact too:
rejection trials are independent, so the frame drawn after any number of rejected trials has
the target distribution. It makes the cost bounded for any temperature (at a very small T the
boxes are loose against T and the fallback does the work).

Numerics: the cell's proposal mass is a float32 cumulative sum over the cells of the target
animal (relative rounding about 1e-7 times the number of cells), the boxes and distances are
float32. Noise comes from `jax.random`, one key per round, so draws differ from the streamed
kernel's for the same key while following the same distribution (the tests compare both with
the exact probabilities).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from nar.method import pose_bank

# Frames per cell, and consecutive frames of a window that share one envelope: smaller cells
# and groups give tighter boxes (fewer rejections) but more box distances. 256 and 8 were
# among the fastest at `locomotion_cpu` shapes (3-d ball velocities, 6 animals x 24,000
# frames, 64 windows of 32 frames, temperature 1): the whole window swap took 1.4 ms on 2 CPU
# cores, against 2.2 ms with cells of 128 and 19 ms for the scan; one round of proposals
# settles 99% of the queries.
DEFAULT_CELL_SIZE = 256
DEFAULT_GROUP_SIZE = 8
DEFAULT_PROPOSALS = 4
DEFAULT_MAX_ROUNDS = 16
# Behaviour with at most this many dimensions is swapped with cells when the kernel is "auto".
MAX_CELL_DIM = 8


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=("members", "count", "low", "high"),
                   meta_fields=("cell_size",))
@dataclasses.dataclass(frozen=True)
class CellIndex:
  """The valid frames of every animal of a `PoseBank`, cut into cells with bounding boxes.

  Attributes:
    members: `[A, C, cell_size]` int32 bank frame indices of each cell's frames, -1 padding.
    count: `[A, C]` int32 frames in each cell (0 for the padding cells of smaller pools).
    low, high: `[A, C, D]` float32 corners of each cell's box in the distance space
      (`pose_bank.to_distance_space`); 0 for empty cells.
    cell_size: the largest number of frames in a cell.
  """

  members: jax.Array
  count: jax.Array
  low: jax.Array
  high: jax.Array
  cell_size: int

  @property
  def num_cells(self) -> int:
    return int(self.count.shape[1])


def _kd_cells(points: np.ndarray, cell_size: int) -> list[np.ndarray]:
  """Row indices of `points` cut into cells of at most `cell_size` by k-d halving.

  Every split is along the widest dimension and hands the left part a whole number of full
  cells, so all cells but one per animal are full.
  """
  cells, stack = [], [np.arange(len(points))]
  while stack:
    rows = stack.pop()
    if len(rows) <= cell_size:
      cells.append(rows)
      continue
    part = points[rows]
    axis = int(np.argmax(part.max(0) - part.min(0)))
    num_cells = -(-len(rows) // cell_size)
    left = cell_size * (num_cells // 2)
    order = np.argpartition(part[:, axis], left - 1)
    stack += [rows[order[:left]], rows[order[left:]]]
  return cells


def build_cell_index(bank: pose_bank.PoseBank,
                     cell_size: int = DEFAULT_CELL_SIZE) -> CellIndex:
  """Cuts the valid frames of each animal of `bank` into cells and records their boxes.

  Runs once per run, on the host (a k-d split: a fraction of a second for 150,000 frames).

  Example:
    >>> import numpy as np
    >>> from nar.method import pose_bank
    >>> rng = np.random.default_rng(0)
    >>> bank = pose_bank.make_pose_bank({"a": rng.normal(size=(300, 3)),
    ...                                  "b": rng.normal(size=(200, 3))}, None, ["a", "b"])
    >>> cells = build_cell_index(bank, cell_size=32)
    >>> cells.members.shape, [int(n) for n in cells.count.sum(1)]
    ((2, 10, 32), [300, 200])

  Args:
    bank: the swap's pools.
    cell_size: largest number of frames in a cell (>= 1).

  Returns:
    The cells, on the default device.
  """
  if not isinstance(cell_size, (int, np.integer)) or cell_size < 1:
    raise ValueError(f"cell_size must be a positive int, got {cell_size!r}")
  frames = np.asarray(bank.frames)
  valid = np.asarray(bank.valid)
  scale = (np.ones(frames.shape[-1], np.float32) if bank.distance_scale is None
           else np.asarray(bank.distance_scale))
  per_animal = []
  for row in range(bank.num_animals):
    frame_ids = np.flatnonzero(valid[row])
    points = frames[row, frame_ids] * scale
    per_animal.append([(frame_ids[cell], points[cell]) for cell in
                       _kd_cells(points, cell_size)])
  num_cells = max(len(cells) for cells in per_animal)
  shape = (bank.num_animals, num_cells)
  members = np.full(shape + (cell_size,), -1, np.int32)
  count = np.zeros(shape, np.int32)
  low = np.zeros(shape + (frames.shape[-1],), np.float32)
  high = np.zeros_like(low)
  for row, cells in enumerate(per_animal):
    for column, (ids, points) in enumerate(cells):
      members[row, column, :len(ids)] = ids
      count[row, column] = len(ids)
      low[row, column], high[row, column] = points.min(0), points.max(0)
  return CellIndex(members=jnp.asarray(members), count=jnp.asarray(count),
                   low=jnp.asarray(low), high=jnp.asarray(high), cell_size=int(cell_size))


def check_cells(cells: CellIndex, bank: pose_bank.PoseBank) -> None:
  """Raises ValueError unless `cells` was built from a bank of `bank`'s shapes."""
  if (tuple(cells.low.shape[::2]) != (bank.num_animals, bank.pose_dim)
      or cells.members.shape[:2] != cells.count.shape):
    raise ValueError(f"the cells (boxes {tuple(cells.low.shape)}) were not built from this "
                     f"bank ({bank.num_animals} animals of D={bank.pose_dim}); build them "
                     f"with build_cell_index(bank)")


def _box_distances(low: jax.Array, high: jax.Array, cell_low: jax.Array,
                   cell_high: jax.Array) -> jax.Array:
  """`[G, C]` Euclidean distance between boxes `[G, D]` and their cells' boxes `[G, C, D]`:
  the smallest distance between a point of one and a point of the other."""
  gap = (jnp.maximum(cell_low - high[:, None], 0.0)
         + jnp.maximum(low[:, None] - cell_high, 0.0))
  return jnp.sqrt(jnp.sum(gap * gap, axis=-1))


def draw_by_rejection(key: jax.Array, queries: jax.Array, query_target: jax.Array,
                      bank: pose_bank.PoseBank, cells: CellIndex, inv_temperature: jax.Array, *,
                      proposals: int = DEFAULT_PROPOSALS,
                      max_rounds: int = DEFAULT_MAX_ROUNDS,
                      group_size: int = 1) -> tuple[jax.Array, jax.Array]:
  """Rounds of rejection from the cells' envelope: one exact draw per query that succeeds.

  Traceable (call it inside jit). `nar.method.swap.swap_pose_windows(..., cells=...)` is the
  checked entry, which gives the queries that are not done after `max_rounds` to the streamed
  kernel.

  Args:
    key: PRNG key.
    queries: `[N, D]` query frames (not scaled: the bank's `distance_scale` is applied here).
    query_target: `[N]` int32 bank row to draw from; -1 draws nothing.
    bank: the pools.
    cells: `build_cell_index(bank)`.
    inv_temperature: scalar 1 / temperature.
    proposals: candidates drawn per query and round (static).
    max_rounds: rounds at most (static).
    group_size: consecutive queries that share one envelope (static, dividing N): the
      bounding box of their frames stands for each of them, which bounds every frame's
      weight as well; fewer box distances, more rejections. Queries of a group must share
      their target (e.g. the frames of a window swapped with one animal).

  Returns:
    `(drawn [N] int32, done [N] bool)`: the frame index within the target animal where done;
    done is also True, with drawn -1, for target -1 and for non-finite queries.
  """
  num_queries = queries.shape[0]
  finite = jnp.all(jnp.isfinite(queries), axis=-1)
  query_target = jnp.where(finite, query_target, -1)
  target = jnp.maximum(query_target, 0)
  points = pose_bank.to_distance_space(jnp.where(finite[:, None], queries, 0.0),
                                       bank.distance_scale)
  # The envelope: log(n_c u_c) per (group, cell), as a cumulative mass to draw cells from.
  groups = num_queries // group_size
  grouped = points.reshape(groups, group_size, -1)
  grouped_finite = finite.reshape(groups, group_size, 1)
  group_low = jnp.min(jnp.where(grouped_finite, grouped, jnp.inf), axis=1)
  group_high = jnp.max(jnp.where(grouped_finite, grouped, -jnp.inf), axis=1)
  group_target = target.reshape(groups, group_size)[:, 0]
  group_bound = _box_distances(group_low, group_high, cells.low[group_target],
                               cells.high[group_target]) * inv_temperature
  group_count = cells.count[group_target]
  log_mass = jnp.where(group_count > 0,
                       jnp.log(jnp.maximum(group_count, 1).astype(jnp.float32)) - group_bound,
                       -jnp.inf)
  cumulative = jnp.cumsum(jnp.exp(log_mass - jnp.max(log_mass, axis=-1, keepdims=True)), -1)
  # Every query reads its group's row.
  group_of_query = jnp.arange(num_queries) // group_size
  draw_cells = jax.vmap(functools.partial(jnp.searchsorted, side="right"))
  rows = group_of_query[:, None]

  def one_round(carry):
    round_index, drawn, done = carry
    cell_key, member_key, accept_key = jax.random.split(jax.random.fold_in(key, round_index), 3)
    shape = (num_queries, proposals)
    uniforms = (jax.random.uniform(cell_key, (groups, group_size * proposals))
                * cumulative[:, -1:])
    cell = draw_cells(cumulative, uniforms).reshape(shape)
    cell = jnp.minimum(cell, cells.num_cells - 1)
    cell_count = group_count[rows, cell]
    member = jnp.minimum((jax.random.uniform(member_key, shape) * cell_count).astype(jnp.int32),
                         jnp.maximum(cell_count - 1, 0))
    frame = cells.members[target[:, None], cell, member]
    candidate = pose_bank.to_distance_space(bank.frames[target[:, None], jnp.maximum(frame, 0)],
                                            bank.distance_scale)
    distance = jnp.sqrt(jnp.sum(jnp.square(candidate - points[:, None]), -1)) * inv_temperature
    # Accept with probability exp(-(d_l - d_c)); log(u) of a uniform in (0, 1].
    log_u = jnp.log1p(-jax.random.uniform(accept_key, shape))
    accepted = (log_u <= group_bound[rows, cell] - distance) & (frame >= 0)
    first = jnp.argmax(accepted, axis=-1)
    newly_done = jnp.any(accepted, axis=-1) & ~done
    drawn = jnp.where(newly_done, frame[jnp.arange(num_queries), first], drawn)
    return round_index + 1, drawn, done | newly_done

  def more_rounds(carry):
    round_index, _, done = carry
    return (round_index < max_rounds) & ~jnp.all(done)

  init = (jnp.zeros((), jnp.int32), jnp.full((num_queries,), -1, jnp.int32), query_target < 0)
  _, drawn, done = lax.while_loop(more_rounds, one_round, init)
  return drawn, done


def acceptance_rate(queries: jax.Array, query_target: jax.Array, bank: pose_bank.PoseBank,
                    cells: CellIndex, temperature: float) -> float:
  """Mean over queries of sum_l w_l / sum_c n_c u_c: the chance that a proposal is kept.

  A diagnostic of how tight the cells are at `temperature` (computed exactly, with every
  distance: for small query sets only).
  """
  points = pose_bank.to_distance_space(jnp.asarray(queries, jnp.float32), bank.distance_scale)
  target = jnp.asarray(query_target)
  pools = pose_bank.to_distance_space(bank.frames[target], bank.distance_scale)
  distances = jnp.sqrt(jnp.sum(jnp.square(pools - points[:, None]), -1)) / temperature
  exact = jnp.sum(jnp.where(bank.valid[target], jnp.exp(-distances), 0.0), -1)
  bounds = _box_distances(points, points, cells.low[target], cells.high[target]) / temperature
  envelope = jnp.sum(cells.count[target] * jnp.exp(-bounds), -1)
  return float(jnp.mean(exact / envelope))
