"""Fixtures shared by the test modules."""
import math
import os
import pathlib
import zlib

import numpy as np
import pytest
import tifffile

REPO_DIR = pathlib.Path(__file__).resolve().parent.parent


def write_tiff_declaring(path, width: int, height: int):
  """A zlib-tiled RGB TIFF whose header declares width x height; every tile is an empty zlib stream.

  60000x60000 makes a 56 kB file that a reader without a pixel limit turns into a 10 GiB allocation before failing
  at its first tile (valid tiles of zeros would be 10.7 MB and decode in full).
  """
  tiles = math.ceil(width / 1024) * math.ceil(height / 1024)
  tifffile.imwrite(path, (zlib.compress(b'') for _ in range(tiles)), shape=(height, width, 3), dtype=np.uint8,
                   tile=(1024, 1024), compression='zlib', photometric='rgb')


def damage_checkpoint(step_dir: pathlib.Path):
  """What a kill mid-save on a file system without atomic renames leaves: no metadata, truncated files."""
  (step_dir / '_CHECKPOINT_METADATA').unlink()
  truncate_files(step_dir)


def truncate_files(folder: pathlib.Path):
  for file in folder.rglob('*'):
    if file.is_file():
      file.write_bytes(b'truncated')


@pytest.fixture(scope='session')
def shared_dir() -> pathlib.Path:
  """`<repo>/../shared` (data, reference weights, peer benchmark); skips the test where CI has no copy of it."""
  path = REPO_DIR.parent / 'shared'
  if not path.is_dir():
    pytest.skip(f'{path} is absent (it sits beside the repository on the development machine and in CI).')
  return path


@pytest.fixture(scope='session')
def session_cache_dir(tmp_path_factory) -> pathlib.Path:
  """One XLA compilation cache for the whole test session: each program compiles once, in any process.

  Under pytest-xdist the workers share it (beside their own temporary folders), as a test and the processes it
  starts already do: a program one worker compiled loads in the other. An entry read while another process is
  still writing it fails to load, and JAX warns and compiles it again.
  """
  if 'PYTEST_XDIST_WORKER' not in os.environ:
    return tmp_path_factory.mktemp('xla_cache')
  path = tmp_path_factory.getbasetemp().parent / 'xla_cache'
  path.mkdir(exist_ok=True)
  return path


@pytest.fixture(scope='session')
def synthetic_data_dir(tmp_path_factory) -> pathlib.Path:
  """A TFDS data dir in which the synthetic dataset gets prepared once per session."""
  return tmp_path_factory.mktemp('tensorflow_datasets')


def tiny_synthetic_config(data_dir, cache_dir):
  """The demo config shrunk to seconds per step on a CPU: 3 levels, 32x32, a dozen steps."""
  from configs import synthetic  # pylint: disable=import-outside-toplevel
  config = synthetic.get_config()
  config.data_dir = str(data_dir)
  config.compilation_cache_dir = str(cache_dir)
  config.filters = (8, 16, 32)
  config.image_size = (32, 32)
  config.batch_size = 8
  config.schedule = 'constant'  # Its program does not depend on the step count: the tests' runs share one compile.
  config.num_train_steps = 12
  config.log_every_steps = 2
  config.eval_every_steps = 6
  config.checkpoint_every_steps = 3
  config.num_eval_images_logged = 4
  return config


@pytest.fixture
def tiny_config(synthetic_data_dir, session_cache_dir):
  return tiny_synthetic_config(synthetic_data_dir, session_cache_dir)


TRAINED_STEPS = 4


@pytest.fixture(scope='session')
def trained_workdir(synthetic_data_dir, session_cache_dir, tmp_path_factory) -> str:
  """A workdir trained for TRAINED_STEPS steps on the synthetic data, made once per session.

  Its config.json names the session's compilation cache, so the evaluate and predict
  programs that tests start reuse what this process compiled.
  """
  from resunetpp_jax.training import loop
  config = tiny_synthetic_config(synthetic_data_dir, session_cache_dir)
  config.augment = 'none'
  config.num_train_steps = TRAINED_STEPS
  config.eval_every_steps = TRAINED_STEPS
  config.checkpoint_every_steps = TRAINED_STEPS
  config.num_eval_images_logged = 2
  workdir = tmp_path_factory.mktemp('trained_workdir')
  loop.train_and_evaluate(config, str(workdir))
  return str(workdir)


def pytest_collection_modifyitems(items):
  """Marks every test that reads ../shared (through the `shared_dir` fixture) `shared_data`, so that
  `-m "not shared_data"` leaves them out without a skip each."""
  for item in items:
    if 'shared_dir' in getattr(item, 'fixturenames', ()):
      item.add_marker(pytest.mark.shared_data)
