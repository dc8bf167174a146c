"""The repository's place and the demo config shrunk to seconds per step, for tests that train."""
import pathlib

REPO_DIR = pathlib.Path(__file__).resolve().parents[2]
TRAINED_STEPS = 4  # The steps of conftest's session-wide `trained_workdir`.


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
