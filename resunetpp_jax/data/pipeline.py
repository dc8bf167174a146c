"""The grain input pipeline: prepared TFDS data -> local numpy batches.

Training: an infinite, per-host stream of augmented batches
{'image': uint8 (B_local, H, W, 3), 'mask': uint8 (B_local, H, W, 1) in {0, 1}}.
Global position g (the g-th example of the whole run, over all hosts) belongs
to epoch g // E and slot g % E, where E = train_steps_per_epoch * batch_size
(the remainder of each epoch is dropped, so no batch straddles two epochs).
The slot picks an example through a permutation seeded by (seed, epoch), and
the augmentation RNG is seeded by (seed, epoch, slot): the data depend only on
the config, never on the number of worker processes or threads. Host p reads
the positions p, p + P, p + 2P, ..., so the hosts' local batches together form
global batch b = positions [b * B, (b + 1) * B).

Evaluation: each split is read once, deterministically, without augmentation;
the last global batch is padded with zero images of weight 0 and every host
yields the same number of batches (multi-host collectives need that).

Nothing here imports TensorFlow.
"""
import math
from typing import Iterator

from absl import flags
import grain
import ml_collections
import numpy as np

from resunetpp_jax import config_validation
from resunetpp_jax.data import augment
from resunetpp_jax.data import builders

# Every example exactly once, for cross-dataset evaluation.
ALL_SPLIT, ALL_PARTS = 'all', ('train', 'valid', 'test')
# Domain tags keep the shuffle and augmentation streams independent.
_SHUFFLE_STREAM, _AUGMENT_STREAM = 0, 1
# Threads per process: cv2 and numpy release the GIL, so threads overlap the
# decoding and augmentation of consecutive batches.
_READ_THREADS = 2


def prepare_if_needed(config: ml_collections.ConfigDict):
  """Prepares config.dataset on first use (with a progress bar); its builder."""
  return builders.prepare(config.dataset, config.data_dir, config.manual_dir)


def _tfds_split(builder, dataset: str, split: str) -> str:
  """The TFDS split expression of `split`; 'all' is train+valid+test.

  (TFDS reserves 'all' for the union of every stored split, which would count
  the PraNet splits a second time.)
  """
  if split == ALL_SPLIT:
    return '+'.join(ALL_PARTS)
  if split not in builder.info.splits:
    raise config_validation.ConfigError(
        f'Split {split!r} does not exist in dataset {dataset!r}; available:'
        f' {sorted(builder.info.splits) + [ALL_SPLIT]}.')
  return split


def _source(config: ml_collections.ConfigDict, split: str):
  builder = prepare_if_needed(config)
  return builder.as_data_source(_tfds_split(builder, config.dataset, split))


def num_examples(config: ml_collections.ConfigDict, split: str) -> int:
  """Number of examples in `split` of config.dataset."""
  builder = prepare_if_needed(config)
  split = _tfds_split(builder, config.dataset, split)
  return builder.info.splits[split].num_examples


def _local_batch_size(config: ml_collections.ConfigDict,
                      process_count: int) -> int:
  if config.batch_size % process_count:
    raise config_validation.ConfigError(
        f'config.batch_size={config.batch_size} must be divisible by the'
        f' number of hosts ({process_count}).')
  return config.batch_size // process_count


def train_steps_per_epoch(config: ml_collections.ConfigDict) -> int:
  """Global steps per epoch: train examples * epoch_multiplier // batch_size."""
  examples = num_examples(config, config.train_split) * config.epoch_multiplier
  steps = examples // config.batch_size
  if steps == 0:
    raise config_validation.ConfigError(
        f'config.batch_size={config.batch_size} exceeds the {examples} training'
        f' examples per epoch of {config.dataset!r}/{config.train_split}: lower'
        ' the batch size or raise config.epoch_multiplier.')
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


def _read_options(config: ml_collections.ConfigDict) -> grain.ReadOptions:
  return grain.ReadOptions(
      num_threads=_READ_THREADS,
      prefetch_buffer_size=max(config.prefetch_buffer_size, _READ_THREADS))


def make_train_iterator(config: ml_collections.ConfigDict, *,
                        process_index: int = 0,
                        process_count: int = 1) -> grain.DatasetIterator:
  """Infinite iterator of this host's training batches.

  Supports get_state()/set_state() for checkpointing; a state restores only
  into an iterator built with the same config.num_workers.
  """
  if config.augment not in augment.POLICIES:
    raise ValueError(f'config.augment={config.augment!r}: expected one of'
                     f' {augment.POLICIES}.')
  local_batch_size = _local_batch_size(config, process_count)
  epoch_size = train_steps_per_epoch(config) * config.batch_size
  train_example = _TrainExample(
      _source(config, config.train_split), epoch_size, config.seed,
      config.augment, tuple(config.image_size), config.epoch_multiplier)
  dataset = (
      grain.MapDataset.range(process_index, 2**62, process_count)
      .map(train_example)
      .batch(local_batch_size, drop_remainder=True)
      .to_iter_dataset(_read_options(config)))
  if config.num_workers > 0:
    # grain reads its absl flags when starting workers; programs that never
    # parse flags (pytest, notebooks) get the defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=config.num_workers,
        per_worker_buffer_size=config.prefetch_buffer_size))
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


def num_eval_batches(config: ml_collections.ConfigDict, split: str) -> int:
  """Batches each host's eval iterator yields: ceil(examples / batch_size)."""
  return math.ceil(num_examples(config, split) / config.batch_size)


def make_eval_iterator(config: ml_collections.ConfigDict, split: str, *,
                       process_index: int = 0,
                       process_count: int = 1) -> grain.DatasetIterator:
  """Finite iterator over `split`: every example once across all hosts.

  Batches carry 'weight' float32 (B_local,), 1 for real examples and 0 for
  the padding that fills the last global batch. Decoding runs in threads of
  this process (no worker processes to start at every evaluation).
  """
  local_batch_size = _local_batch_size(config, process_count)
  num_slots = num_eval_batches(config, split) * config.batch_size
  eval_example = _EvalExample(_source(config, split), tuple(config.image_size))
  dataset = (
      grain.MapDataset.range(process_index, num_slots, process_count)
      .map(eval_example)
      .batch(local_batch_size, drop_remainder=True)
      .to_iter_dataset(_read_options(config)))
  return iter(dataset)


def iterate_originals(config: ml_collections.ConfigDict,
                      split: str) -> Iterator[dict]:
  """Yields each example of `split` at its original size, in stored order.

  Items: {'name': str, 'image': uint8 (H, W, 3), 'mask': bool (H, W)}.
  """
  source = _source(config, split)
  for index in range(len(source)):
    example = source[index]
    yield {'name': example['name'].decode('utf-8'),
           'image': example['image'],
           'mask': example['mask'][:, :, 0] >= 128}
