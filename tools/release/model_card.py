r"""Writes the model card into a model file: the facts of its training run and the scores `evaluate` gave it.

  python -m resunetpp_jax.evaluate --model=MODEL --config=configs/polyp.py --output_dir=EVAL_DIR ...
  python -m tools.release.model_card --model=MODEL --eval_dir=EVAL_DIR --machine='one NVIDIA H200' --minutes=9.6

MODEL is a model file (`resunetpp_jax.pretrained --workdir=...`, or `tools.device.join_model` for one a GPU call
returned in parts); it is rewritten with the card in its metadata ('card', JSON). `scores['NAME:SPLIT']` holds each
evaluate JSON's numbers (the shipped-weights test reads `scores['kvasir_seg:pranet_test']['mean_dice']`); the
recipe is read from the model file's own config, so the card cannot disagree with what was trained; the commit is
the checkout's HEAD. It prints the card, for the README's model card.
"""
import glob
import json
import os
import subprocess

from absl import flags

from resunetpp_jax import errors
from resunetpp_jax.checkpoints import model_file
from resunetpp_jax.cli import reporting

_MODEL = flags.DEFINE_string('model', None, 'The model file (.safetensors) to write the card into.',
                             required=True)
_EVAL_DIR = flags.DEFINE_string('eval_dir', None, "Folder of evaluate's NAME-SPLIT.json files.", required=True)
_MACHINE = flags.DEFINE_string('machine', None, 'What trained it, e.g. "one NVIDIA H200".', required=True)
_MINUTES = flags.DEFINE_float('minutes', None, 'Minutes from process start to the final checkpoint.',
                              required=True)
_NOTE = flags.DEFINE_string('note', '', 'What a user must know about this model, in a sentence.')

TERMS = ('Trained on Kvasir-SEG and CVC-ClinicDB, released for research and education only: so is this model. '
         'Not a medical device.')
_NOT_SCORES = ('dataset', 'split', 'model', 'checkpoint')


def write_card(model_path: str, eval_dir: str, machine: str, minutes: float, note: str = '') -> dict:
  """Rewrites the model file at `model_path` with its card; returns the card."""
  model, config, metadata = model_file.load(model_path)
  scores = {}
  for path in sorted(glob.glob(os.path.join(eval_dir, '*.json'))):
    with open(path) as f:
      result = json.load(f)
    if 'dataset' not in result:
      continue
    scores[f"{result['dataset']}:{result['split']}"] = {
        key: value for key, value in result.items() if key not in _NOT_SCORES}
  if 'kvasir_seg:pranet_test' not in scores:
    raise errors.UserError(f'{eval_dir} has no kvasir_seg-pranet_test.json: the shipped-weights test needs '
                        'that score. Run evaluate with --datasets=kvasir_seg:pranet_test first.')
  commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                          check=False).stdout.strip()
  recipe = {key: config[key] for key in (
      'model', 'filters', 'image_size', 'train_data', 'validation_fraction', 'init_from', 'batch_size',
      'num_epochs', 'num_train_steps', 'optimizer', 'learning_rate', 'schedule', 'warmup_steps', 'dtype',
      'bn_momentum', 'ema_decay', 'loss', 'augment', 'seed')}
  card = {'commit': commit, 'machine': machine, 'minutes': minutes, 'recipe': recipe, 'scores': scores,
          'terms': TERMS, 'note': note}
  step = model_file.step_of(metadata)
  scratch = model_path + '.writing'  # The model file is replaced only once the new one is whole.
  model_file.save(model, config, scratch, step=step, card=card)
  os.replace(scratch, model_path)
  return card


def main(argv):
  del argv
  card = write_card(_MODEL.value, _EVAL_DIR.value, _MACHINE.value, _MINUTES.value, _NOTE.value)
  print(json.dumps(card, indent=2))
  print(f'{_MODEL.value}: card written (scores of {", ".join(card["scores"])}; commit {card["commit"]}).')


if __name__ == '__main__':
  reporting.run(main)
