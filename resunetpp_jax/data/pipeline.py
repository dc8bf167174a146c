"""The grain input pipeline: prepared TFDS data -> local numpy batches.

Training: an infinite, per-host stream of augmented batches
{'image': uint8 (B_local, H, W, 3), 'mask': uint8 (B_local, H, W, 1) in {0, 1}}
drawn from the training examples: the splits of the plan's train data one
after the other (`Examples`), less the validation carve-out when
validation_fraction > 0 (`held_out`: chosen per split by seed).
Global position g (the g-th example of the whole run, over all hosts) belongs
to epoch g // E and slot g % E, where E = train_steps_per_epoch * batch_size
(the remainder of each epoch is dropped, so no batch straddles two epochs).
The slot picks an example through a permutation seeded by (seed, epoch), and
the augmentation RNG is seeded by (seed, epoch, slot): the data depend only on
the plan, never on the number of worker processes or threads. Host p reads
the positions p, p + P, p + 2P, ..., so the hosts' local batches together form
global batch b = positions [b * B, (b + 1) * B).

Evaluation: each example once, deterministically, without augmentation; the
last global batch is padded with zero images of weight 0 and every host
yields the same number of batches (multi-host collectives need that).

Every function takes the run's `plan.DataPlan` (parsed once from the config) rather than the config.
Nothing here imports TensorFlow.
"""
import math
from typing import Iterator
from typing import Sequence
import zlib

from absl import flags
import grain
import numpy as np

from resunetpp_jax import errors
from resunetpp_jax.data import augment
from resunetpp_jax.data import registry
from resunetpp_jax.data import specs
from resunetpp_jax.data.plan import DataPlan

# Every example exactly once, for cross-dataset evaluation.
ALL_SPLIT, ALL_PARTS = 'all', ('train', 'valid', 'test')
# Domain tags keep the shuffle, augmentation and hold-out streams independent.
_SHUFFLE_STREAM, _AUGMENT_STREAM, _HOLDOUT_STREAM = 0, 1, 2
# Threads per process: cv2 and numpy release the GIL, so threads overlap the
# decoding and augmentation of consecutive batches.
_READ_THREADS = 2


def builder(plan: DataPlan, name: str):
  """Dataset `name`, prepared on first use from the plan's manual_dirs."""
  return registry.prepare(name, plan.data_dir, plan.manual_dir(name))


def prepare_if_needed(plan: DataPlan):
  """Prepares every dataset that training reads (with a progress bar)."""
  for name in dict.fromkeys(spec.name for spec in plan.train + plan.validation):
    builder(plan, name)


def _tfds_split(dataset_builder, spec: specs.DataSpec) -> str:
  """The TFDS split expression of `spec`; 'all' is train+valid+test.

  (TFDS reserves 'all' for the union of every stored split, which would count
  the PraNet splits a second time.)
  """
  if spec.split == ALL_SPLIT:
    return '+'.join(ALL_PARTS)
  if spec.split not in dataset_builder.info.splits:
    raise errors.ConfigError(
        f'Split {spec.split!r} does not exist in dataset {spec.name!r};'
        f' available: {sorted(dataset_builder.info.splits) + [ALL_SPLIT]}.')
  return spec.split


class Examples:
  """Chosen examples of one or more prepared splits, in a fixed order.

  Random access (`len`, `[index]`) over `parts`: (DataSpec, TFDS data source,
  indices into that source) each. Picklable, so grain workers receive it.
  """

  def __init__(self, parts):
    self.parts = tuple(parts)
    self._ends = np.cumsum([len(indices) for _, _, indices in self.parts])

  def __len__(self) -> int:
    return int(self._ends[-1]) if self.parts else 0

  def __getitem__(self, index: int) -> dict:
    part = int(np.searchsorted(self._ends, index, side='right'))
    start = int(self._ends[part - 1]) if part else 0
    _, source, indices = self.parts[part]
    return source[int(indices[index - start])]

  def describe(self) -> str:
    """'kvasir_seg:pranet_train (810) + cvc_clinicdb:pranet_train (495)'."""
    return ' + '.join(f'{spec} ({len(indices)})'
                      for spec, _, indices in self.parts)


def _source(plan: DataPlan, spec: specs.DataSpec):
  dataset_builder = builder(plan, spec.name)
  return dataset_builder.as_data_source(_tfds_split(dataset_builder, spec))


def examples(plan: DataPlan, data: str | Sequence[specs.DataSpec]) -> Examples:
  """Every example of `data` (DataSpecs, or '+'-joined NAME:SPLIT items), in stored order."""
  parts = []
  for spec in specs.parse_data(data, 'data') if isinstance(data, str) else data:
    source = _source(plan, spec)
    parts.append((spec, source, np.arange(len(source))))
  return Examples(parts)


def held_out(spec: specs.DataSpec, num_examples: int, seed: int,
             fraction: float) -> np.ndarray:
  """Sorted indices of the validation carve-out of one training split.

  round(fraction * num_examples) examples chosen by (seed, spec) alone: the
  same on every host and in every run, and unchanged when other items join
  the plan's train data.
  """
  rng = np.random.default_rng(
      [seed, _HOLDOUT_STREAM, zlib.crc32(str(spec).encode())])
  return np.sort(rng.permutation(num_examples)[:round(fraction * num_examples)])


def _split_training(plan: DataPlan) -> tuple[list, list]:
  """(training parts, carved-out validation parts) of the plan's train data."""
  training, validation = [], []
  for spec in plan.train:
    source = _source(plan, spec)
    holdout = held_out(spec, len(source), plan.seed, plan.validation_fraction)
    training.append((spec, source, np.setdiff1d(np.arange(len(source)),
                                                holdout)))
    validation.append((spec, source, holdout))
  return training, validation


def training_examples(plan: DataPlan) -> Examples:
  """The plan's train data, less the validation carve-out."""
  return Examples(_split_training(plan)[0])


def validation_examples(plan: DataPlan) -> Examples | None:
  """The carve-out of the train data (validation_fraction > 0), else the
  validation data; None when training has no validation."""
  if plan.validation_fraction > 0:
    carved = Examples(_split_training(plan)[1])
    if not len(carved):
      raise errors.ConfigError(
          f'config.validation_fraction={plan.validation_fraction} holds out'
          f' no example of {plan.named(plan.train)!r}: raise it.')
    return carved
  if not plan.validation:
    return None
  return examples(plan, plan.validation)


def _local_batch_size(plan: DataPlan, process_count: int) -> int:
  if plan.batch_size % process_count:
    raise errors.ConfigError(
        f'config.batch_size={plan.batch_size} must be divisible by the'
        f' number of hosts ({process_count}).')
  return plan.batch_size // process_count


def train_steps_per_epoch(plan: DataPlan) -> int:
  """Global steps per epoch: train examples * epoch_multiplier // batch_size."""
  num_examples = len(training_examples(plan)) * plan.epoch_multiplier
  steps = num_examples // plan.batch_size
  if steps == 0:
    raise errors.ConfigError(
        f'config.batch_size={plan.batch_size} exceeds the {num_examples}'
        f' training examples per epoch of {plan.named(plan.train)!r}: lower the'
        ' batch size or raise config.epoch_multiplier.')
  return steps


def _decode(example: dict) -> tuple[np.ndarray, np.ndarray]:
  """TFDS example -> (RGB uint8 (H, W, 3), mask uint8 (H, W) in {0, 1})."""
  mask = (example['mask'][:, :, 0] >= 128).astype(np.uint8)
  return example['image'], mask


class _TrainExample:
  """Global position -> augmented, resized example (a picklable callable)."""

  def __init__(self, source, epoch_size: int, seed: int, policy: str,
               image_size: tuple[int, int], epoch_multiplier: int):
    self._source = source
    self._epoch_size = epoch_size
    self._seed = seed
    self._policy = policy
    self._image_size = image_size
    self._epoch_multiplier = epoch_multiplier
    # (epoch, permutation), replaced as a whole: reader threads share it.
    self._permutation = (None, None)

  def _example_index(self, epoch: int, slot: int) -> int:
    cached_epoch, permutation = self._permutation
    if cached_epoch != epoch:
      rng = np.random.default_rng([self._seed, _SHUFFLE_STREAM, epoch])
      num_source = len(self._source)
      permutation = rng.permutation(
          num_source * self._epoch_multiplier) % num_source
      self._permutation = (epoch, permutation)
    return int(permutation[slot])

  def __call__(self, position: int) -> dict:
    epoch, slot = divmod(int(position), self._epoch_size)
    image, mask = _decode(self._source[self._example_index(epoch, slot)])
    rng = np.random.default_rng([self._seed, _AUGMENT_STREAM, epoch, slot])
    image, mask = augment.augment(self._policy, image, mask, rng)
    image, mask = augment.resize_pair(image, mask, self._image_size)
    return {'image': image, 'mask': mask[:, :, None]}


def _read_options(plan: DataPlan) -> grain.ReadOptions:
  return grain.ReadOptions(
      num_threads=_READ_THREADS,
      prefetch_buffer_size=max(plan.prefetch_buffer_size, _READ_THREADS))


def make_train_iterator(plan: DataPlan, *,
                        process_index: int = 0,
                        process_count: int = 1) -> grain.DatasetIterator:
  """Infinite iterator of this host's training batches.

  Supports get_state()/set_state() for checkpointing; a state restores only
  into an iterator built with the same config.num_workers.
  """
  if plan.augment not in augment.POLICIES:
    raise ValueError(f'config.augment={plan.augment!r}: expected one of'
                     f' {augment.POLICIES}.')
  local_batch_size = _local_batch_size(plan, process_count)
  epoch_size = train_steps_per_epoch(plan) * plan.batch_size
  train_example = _TrainExample(
      training_examples(plan), epoch_size, plan.seed, plan.augment,
      tuple(plan.image_size), plan.epoch_multiplier)
  dataset = (
      grain.MapDataset.range(process_index, 2**62, process_count)
      .map(train_example)
      .batch(local_batch_size, drop_remainder=True)
      .to_iter_dataset(_read_options(plan)))
  if plan.num_workers > 0:
    # grain reads its absl flags when starting workers; programs that never
    # parse flags (pytest, notebooks) get the defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=plan.num_workers,
        per_worker_buffer_size=plan.prefetch_buffer_size))
  return iter(dataset)


class _EvalExample:
  """Slot -> resized example with weight 1, or a zero example of weight 0."""

  def __init__(self, source, image_size: tuple[int, int]):
    self._source = source
    self._image_size = image_size

  def __call__(self, slot: int) -> dict:
    height, width = self._image_size
    if slot >= len(self._source):
      return {'image': np.zeros((height, width, 3), np.uint8),
              'mask': np.zeros((height, width, 1), np.uint8),
              'weight': np.float32(0.0)}
    image, mask = augment.resize_pair(*_decode(self._source[int(slot)]),
                                      self._image_size)
    return {'image': image, 'mask': mask[:, :, None],
            'weight': np.float32(1.0)}


def num_eval_batches(plan: DataPlan,
                     eval_examples: Examples) -> int:
  """Batches each host's eval iterator yields: ceil(examples / batch_size)."""
  return math.ceil(len(eval_examples) / plan.batch_size)


def make_eval_iterator(plan: DataPlan,
                       eval_examples: Examples, *, process_index: int = 0,
                       process_count: int = 1) -> grain.DatasetIterator:
  """Finite iterator over `eval_examples`: each once across all hosts.

  Batches carry 'weight' float32 (B_local,), 1 for real examples and 0 for
  the padding that fills the last global batch. Decoding runs in threads of
  this process (no worker processes to start at every evaluation).
  """
  local_batch_size = _local_batch_size(plan, process_count)
  num_slots = num_eval_batches(plan, eval_examples) * plan.batch_size
  eval_example = _EvalExample(eval_examples, tuple(plan.image_size))
  dataset = (
      grain.MapDataset.range(process_index, num_slots, process_count)
      .map(eval_example)
      .batch(local_batch_size, drop_remainder=True)
      .to_iter_dataset(_read_options(plan)))
  return iter(dataset)


def iterate_originals(chosen: Examples) -> Iterator[dict]:
  """Yields each example at its original size, in order.

  Items: {'name': str, 'image': uint8 (H, W, 3), 'mask': bool (H, W)}.
  """
  for index in range(len(chosen)):
    example = chosen[index]
    yield {'name': example['name'].decode('utf-8'),
           'image': example['image'],
           'mask': example['mask'][:, :, 0] >= 128}
