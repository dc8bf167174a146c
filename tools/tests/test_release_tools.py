"""The maintainers' release tools: the model card writer and the joiner of a GPU call's model parts."""
import hashlib
import json

import numpy as np
import pytest

from helpers import model_state
from resunetpp_jax import errors
from resunetpp_jax.checkpoints import model_file
from resunetpp_jax.models import initialization
from tools.device import join_model
from tools.release import model_card


@pytest.fixture
def tiny_model(tiny_config):
  return model_state.eval_model(tiny_config)


def test_model_card_script_writes_the_scores_and_the_recipe_into_the_model_file(tiny_model, tiny_config, tmp_path):
  path = tmp_path / 'model.safetensors'
  model_file.save(tiny_model, tiny_config, path, step=5)
  eval_dir = tmp_path / 'eval'
  eval_dir.mkdir()
  scored = {'dataset': 'kvasir_seg', 'split': 'pranet_test', 'model': 'resunetpp', 'checkpoint': 'latest',
            'mean_dice': 0.8125, 'mdice': 0.8, 'num_images': 100}
  (eval_dir / 'kvasir_seg-pranet_test.json').write_text(json.dumps(scored))
  model_card.write_card(str(path), str(eval_dir), 'two CPU cores', 41.5)
  loaded, _, metadata = model_file.load(path)
  card = json.loads(metadata['card'])
  assert card['scores'] == {'kvasir_seg:pranet_test': {'mean_dice': 0.8125, 'mdice': 0.8, 'num_images': 100}}
  assert card['recipe']['filters'] == list(tiny_config.filters) and card['minutes'] == 41.5
  assert metadata['step'] == '5' and 'research and education only' in card['terms']
  for (name, (_, before)), (_, (_, after)) in zip(model_state.variables(tiny_model).items(), model_state.variables(loaded).items()):
    np.testing.assert_allclose(after, before, rtol=1e-3, atol=1e-4, err_msg=name)  # Rewritten, not retrained.


def test_model_card_script_refuses_scores_without_the_kvasir_test_set(tiny_model, tiny_config, tmp_path):
  path = tmp_path / 'model.safetensors'
  model_file.save(tiny_model, tiny_config, path, step=5)
  before = path.read_bytes()
  with pytest.raises(errors.UserError, match='kvasir_seg-pranet_test.json'):
    model_card.write_card(str(path), str(tmp_path), 'x', 1.0)
  assert path.read_bytes() == before  # Nothing on disk is lost.


def _split_as_the_gpu_call_does(path, parts_dir, name, size):
  """What tools/device/train_polyp.sh does with `split -b` and `sha256sum`, for a file of a few hundred kB."""
  data = path.read_bytes()
  parts_dir.mkdir()
  for index, start in enumerate(range(0, len(data), size)):
    (parts_dir / f'{name}.part-{index:02d}').write_bytes(data[start:start + size])
  (parts_dir / 'run.json').write_text(json.dumps({f'{name}_sha256': hashlib.sha256(data).hexdigest()}))


def test_join_model_rejoins_the_parts_of_a_gpu_call_into_the_same_model(tiny_config, tmp_path):
  tiny_config.model = 'unet'
  unet = initialization.create_initialized_model(tiny_config)
  model_file.save(unet, tiny_config, tmp_path / 'unet.safetensors', step=9)
  _split_as_the_gpu_call_does(tmp_path / 'unet.safetensors', tmp_path / 'out', 'unet', size=20_000)
  assert len(list((tmp_path / 'out').glob('unet.part-*'))) > 2
  summary = join_model.join(str(tmp_path / 'out'), str(tmp_path / 'joined.safetensors'), name='unet',
                            card={'machine': 'H200'})
  assert 'step 9' in summary
  loaded, config, metadata = model_file.load(tmp_path / 'joined.safetensors')
  assert config.model == 'unet' and json.loads(metadata['card']) == {'machine': 'H200'}
  for (name, (_, before)), (_, (_, after)) in zip(model_state.variables(unet).items(), model_state.variables(loaded).items()):
    np.testing.assert_allclose(after, before, rtol=1e-3, atol=1e-4, err_msg=name)


def test_join_model_refuses_a_damaged_or_missing_part_and_writes_nothing(tiny_model, tiny_config, tmp_path):
  model_file.save(tiny_model, tiny_config, tmp_path / 'model.safetensors', step=3)
  _split_as_the_gpu_call_does(tmp_path / 'model.safetensors', tmp_path / 'out', 'model', size=20_000)
  (tmp_path / 'out' / 'model.part-01').unlink()
  with pytest.raises(errors.UserError, match='missing or damaged'):
    join_model.join(str(tmp_path / 'out'), str(tmp_path / 'joined.safetensors'))
  (tmp_path / 'out' / 'unet.part-00').write_bytes(b'x')  # A baseline's part whose export never finished.
  with pytest.raises(errors.UserError, match='no unet_sha256'):
    join_model.join(str(tmp_path / 'out'), str(tmp_path / 'joined.safetensors'), name='unet')
  assert not (tmp_path / 'joined.safetensors').exists()
