"""The Keras-style summary: per-block rows and the exact totals of the original network."""
import pytest

from resunetpp_jax.config import defaults
from resunetpp_jax.models import summary as summary_lib


@pytest.mark.slow
def test_default_network_totals_match_the_original():
  config = defaults.get_default_config()
  config.image_size = (32, 48)
  lines = summary_lib.summary(config).splitlines()
  assert lines[-3:] == ['Total params: 10,772,074', 'Trainable params: 10,759,430', 'Non-trainable params: 12,644']
  assert lines[0].startswith('Model: ResUNetPP(filters=(32, 64, 128, 256, 512)')


def test_rows_show_output_shapes_and_hand_counted_parameters():
  config = defaults.get_default_config()
  config.filters = (4, 8, 16)
  config.image_size = (16, 32)
  rows, _ = summary_lib.layer_rows(config)
  by_name = {name.split(' ')[0]: (shape, params) for name, shape, params in rows}
  assert [name.split(' ')[0] for name, _, _ in rows] == [
      'image', 'enc.0', 'enc.1', 'up.0_1', 'dec.0_1', 'enc.2', 'up.1_1', 'dec.1_1', 'up.0_2', 'dec.0_2',
      'heads.0', 'heads.1']
  # enc.0 (3 -> 4 channels): bn1 4*3, conv1 3*3*3*4+4, bn2 4*4, conv2 3*3*4*4+4, two MLPs 2*(4*1+1*4),
  # sa conv 7*7*2 + sa bn 4, shortcut conv 3*4+4 + bn 4*4.
  assert by_name['enc.0'] == ('(1, 16, 32, 4)', 12 + 112 + 16 + 148 + 16 + 98 + 4 + 16 + 16)
  assert by_name['enc.2'][0] == '(1, 4, 8, 16)'
  assert by_name['up.1_1'] == ('(1, 8, 16, 8)', 3 * 3 * 16 * 8 + 8)
  assert by_name['heads.1'] == ('(1, 16, 32, 1)', 4 + 1)
