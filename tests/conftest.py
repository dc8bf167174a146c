"""Fixtures shared by the test modules (plain helpers they import: tests/helpers/)."""
import os
import pathlib

import pytest

from helpers.tiny_runs import REPO_DIR
from helpers.tiny_runs import TRAINED_STEPS
from helpers.tiny_runs import tiny_synthetic_config


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


@pytest.fixture
def tiny_config(synthetic_data_dir, session_cache_dir):
  return tiny_synthetic_config(synthetic_data_dir, session_cache_dir)


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
