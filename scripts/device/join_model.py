r"""Rejoins the model file that a GPU call returned in parts, checks its hash, and adds the model card.

  python -m scripts.device.join_model --parts=/work/.device/<call>/ \
      --output=resunetpp_jax/weights/polyp.safetensors [--card=card.json]

`--parts` holds `model.part-00`, `model.part-01`, ... and `run.json` (from scripts/device/train_polyp.sh), whose
`model_sha256` the joined file must match. With --card, the card's facts (JSON) go into the file's metadata.
"""
import glob
import hashlib
import json
import os
import tempfile

from absl import flags

from resunetpp_jax import cli
from resunetpp_jax import pretrained

_PARTS = flags.DEFINE_string('parts', None, 'Folder of model.part-* and run.json.', required=True)
_OUTPUT = flags.DEFINE_string('output', None, 'The model file to write.', required=True)
_CARD = flags.DEFINE_string('card', None, 'A JSON file of model-card facts.')


def main(argv):
  del argv
  parts = sorted(glob.glob(os.path.join(_PARTS.value, 'model.part-*')))
  if not parts:
    raise cli.UserError(f'{_PARTS.value} holds no model.part-* file.')
  with open(os.path.join(_PARTS.value, 'run.json')) as f:
    expected = json.load(f)['model_sha256']
  joined = b''.join(open(part, 'rb').read() for part in parts)
  digest = hashlib.sha256(joined).hexdigest()
  if digest != expected:
    raise cli.UserError(f'The {len(parts)} parts in {_PARTS.value} join to sha256 {digest}, run.json says '
                        f'{expected}: a part is missing or damaged.')
  with tempfile.TemporaryDirectory() as scratch:
    path = os.path.join(scratch, 'joined.safetensors')
    with open(path, 'wb') as f:
      f.write(joined)
    model, config, metadata = pretrained.load(path)
  card = None
  if _CARD.value:
    with open(_CARD.value) as f:
      card = json.load(f)
  step = pretrained.step_of(metadata)
  pretrained.save(model, config, _OUTPUT.value, step=step, card=card)
  print(f'{_OUTPUT.value}: {len(parts)} parts, sha256 {digest} checked, step {step}.')


if __name__ == '__main__':
  cli.run(main)
