"""Bad configuration fails before anything is built, naming the key and what is allowed."""
import pathlib
import subprocess
import sys

import pytest

from configs import kvasir
from configs import polyp
from configs import synthetic
from resunetpp_jax.config import validation as config_validation
from resunetpp_jax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('get_config', [kvasir.get_config, polyp.get_config, synthetic.get_config])
def test_shipped_configs_are_valid(get_config):
  config_validation.validate(get_config(), num_devices=8, num_processes=2)


@pytest.mark.parametrize('key, value, message', [
    ('image_size', (290, 384), r'config.image_size=\(290, 384\) .* divisible by 16'),
    ('image_size', (288,), r'config.image_size=\(288,\) must be \(height, width\)'),
    ('model', 'segnet', r"config.model='segnet' is not one of 'resunetpp', 'unet', 'unetpp'"),
    ('loss', 'dise', r"config.loss='dise' is not one of .*'dice'"),
    ('train_data', 'kvasir:train', r"config.train_data names 'kvasir', which is not one of .*'kvasir_seg'"),
    ('train_data', 'kvasir_seg', r"config.train_data item 'kvasir_seg': expected NAME:SPLIT"),
    ('train_data', '', r'config.train_data is empty'),
    ('test_data', 'kvasir_seg:test,cvc300:all', r"config.test_data names 'cvc300', which is not one of .*'cvc_300'"),
    ('manual_dirs', 'kvasir=/data', r"config.manual_dirs names 'kvasir', which is not"),
    ('validation_fraction', 1.0, r'config.validation_fraction=1.0 must be in \[0, 1\)'),
    ('validation_fraction', 0.1, r"config.validation_fraction=0.1 and config.validation_data='kvasir_seg:valid' both"),
    ('dtype', 'float16', r"config.dtype='float16' is not one of 'float32', 'bfloat16'"),
    ('augment', 'heavy', r"config.augment='heavy' is not one of 'original', 'light', 'none'"),
    ('filters', (32,), r'config.filters=\(32,\) must be at least two'),
    ('ema_decay', 1.0, r'config.ema_decay=1.0 must be in \[0, 1\): 0 keeps no moving average'),
    ('ema_decay', -0.5, r'config.ema_decay=-0.5 must be in \[0, 1\)'),
    ('learning_rate', 0.0, r'config.learning_rate=0.0 must be a positive number'),
    ('plateau_factor', 1.0, r'config.plateau_factor=1.0 must be > 1'),
    ('eval_every_steps', 0, r'config.eval_every_steps=0 must be positive, or -1'),
    ('learning_rate', float('nan'), r'config.learning_rate=nan must be a finite number'),
    ('plateau_factor', float('inf'), r'config.plateau_factor=inf must be a finite number'),
    ('head_l2', float('-inf'), r'config.head_l2=-inf must be a finite number'),
])
def test_bad_value_names_the_key_and_the_allowed_values(key, value, message):
  config = kvasir.get_config()
  config[key] = value
  with pytest.raises(ConfigError, match=message):
    config_validation.validate(config, num_devices=1)


def test_depth_sets_the_required_divisor():
  config = kvasir.get_config()
  config.filters = (8, 16, 32)  # Two halvings: multiples of 4 suffice.
  config.image_size = (36, 44)
  config_validation.validate(config, num_devices=1)


def test_batch_must_split_evenly_over_devices_and_processes():
  config = kvasir.get_config()
  config.batch_size = 12
  with pytest.raises(ConfigError, match=r'batch_size=12 .* number of devices \(8\)'):
    config_validation.validate(config, num_devices=8)
  with pytest.raises(ConfigError, match=r'batch_size=12 .* number of processes \(8\)'):
    config_validation.validate(config, num_devices=4, num_processes=8)


@pytest.mark.parametrize('override, message', [
    ('--config.batch_sise=3', 'there is no config key \'batch_sise\'. Did you mean "batch_size"?'),
    ('--config.foo=1', 'there is no config key \'foo\'. Every key is listed in docs/configuration.md'),
    # A value the validation refuses (each of its messages is checked in-process above).
    ('--config.image_size=(30,64)', 'config.image_size=(30, 64) must be (height, width) with both divisible by 16'),
])
@pytest.mark.slow
def test_command_line_reports_bad_overrides_without_a_traceback(override, message, tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'resunetpp_jax.main', '--config=configs/kvasir.py', f'--workdir={tmp_path}', override],
      cwd=REPO, capture_output=True, text=True, timeout=120, env={'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin'})
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'checkpoints').exists()  # Nothing was built.
