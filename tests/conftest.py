"""Fixtures shared by the test modules."""
import pathlib

import pytest

REPO_DIR = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope='session')
def shared_dir() -> pathlib.Path:
  """`<repo>/../shared` (data, reference weights, peer benchmark); skips the test where CI has no copy of it."""
  path = REPO_DIR.parent / 'shared'
  if not path.is_dir():
    pytest.skip(f'{path} is absent (it sits beside the repository on the development machine and in CI).')
  return path


@pytest.fixture(scope='session')
def session_cache_dir(tmp_path_factory) -> pathlib.Path:
  """One XLA compilation cache for the whole test session: each program compiles once, in any process."""
  return tmp_path_factory.mktemp('xla_cache')


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
  config.num_train_steps = 12
  config.log_every_steps = 2
  config.eval_every_steps = 6
  config.checkpoint_every_steps = 3
  config.num_eval_images_logged = 4
  return config


@pytest.fixture
def tiny_config(synthetic_data_dir, session_cache_dir):
  return tiny_synthetic_config(synthetic_data_dir, session_cache_dir)
