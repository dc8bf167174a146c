r"""Rejoins the model file that a GPU call returned in parts, checks its hash, and adds the model card.

  python -m tools.device.join_model --parts=/work/.device/<call>/ \
      --output=resunetpp_jax/weights/polyp.safetensors [--name=unet] [--card=card.json]

`--parts` holds `NAME.part-00`, `NAME.part-01`, ... and `run.json` (from tools/device/train_polyp.sh), whose
`NAME_sha256` the joined file must match (NAME: `model`, the ResUNet++; the baseline's `config.model`, e.g. `unet`).
With --card, the card's facts (JSON) go into the file's metadata.
"""
import glob
import hashlib
import json
import os
import tempfile

from absl import flags

from resunetpp_jax import errors
from resunetpp_jax.checkpoints import model_file
from resunetpp_jax.cli import reporting

_PARTS = flags.DEFINE_string('parts', None, 'Folder of NAME.part-* and run.json.', required=True)
_NAME = flags.DEFINE_string('name', 'model', "The parts' name: 'model' (the ResUNet++) or the baseline's model.")
_OUTPUT = flags.DEFINE_string('output', None, 'The model file to write.', required=True)
_CARD = flags.DEFINE_string('card', None, 'A JSON file of model-card facts.')


def join(parts_dir: str, output: str, name: str = 'model', card: dict | None = None) -> str:
  """Writes the model file that parts_dir's NAME.part-* join to, if their hash is run.json's; returns a summary."""
  parts = sorted(glob.glob(os.path.join(parts_dir, f'{name}.part-*')))
  if not parts:
    raise errors.UserError(f'{parts_dir} holds no {name}.part-* file.')
  try:
    with open(os.path.join(parts_dir, 'run.json')) as f:
      expected = json.load(f).get(f'{name}_sha256')
  except (OSError, ValueError) as error:
    raise errors.UserError(f'{parts_dir}/run.json is missing or unreadable ({error}): the call ended before writing '
                        'it, so the parts cannot be checked.') from error
  if not expected:
    raise errors.UserError(f'{parts_dir}/run.json has no {name}_sha256: the run did not finish its export.')
  joined = b''.join(open(part, 'rb').read() for part in parts)
  digest = hashlib.sha256(joined).hexdigest()
  if digest != expected:
    raise errors.UserError(f'The {len(parts)} parts in {parts_dir} join to sha256 {digest}, run.json says '
                        f'{expected}: a part is missing or damaged.')
  with tempfile.TemporaryDirectory() as scratch:
    path = os.path.join(scratch, 'joined.safetensors')
    with open(path, 'wb') as f:
      f.write(joined)
    model, config, metadata = model_file.load(path)
  step = model_file.step_of(metadata)
  model_file.save(model, config, output, step=step, card=card)
  return f'{output}: {len(parts)} parts, sha256 {digest} checked, step {step}.'


def main(argv):
  del argv
  card = None
  if _CARD.value:
    with open(_CARD.value) as f:
      card = json.load(f)
  print(join(_PARTS.value, _OUTPUT.value, _NAME.value, card))


if __name__ == '__main__':
  reporting.run(main)
