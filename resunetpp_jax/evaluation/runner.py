"""Evaluates a model on whole datasets (the test sets, or the validation data) and writes one JSON per split."""
import json
import os
from typing import Any
from typing import Mapping
from typing import Sequence

from absl import logging
import ml_collections

from resunetpp_jax import errors
from resunetpp_jax.checkpoints import workdir_config
from resunetpp_jax.data import pipeline
from resunetpp_jax.data import specs
from resunetpp_jax.data.plan import DataPlan
from resunetpp_jax.evaluation import scoring
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.runtime import outputs


def run(workdir: str | None, datasets: Sequence[specs.DataSpec],
        config: ml_collections.ConfigDict | None = None,
        checkpoint: str | int = 'best',
        manual_dirs: Mapping[str, str] | None = None, tta: bool = False,
        save_images: bool = False, batch_size: int = 8,
        model: str | None = None,
        output_dir: str | None = None,
        validation: bool = False, overwrite: bool = True) -> list[dict[str, Any]]:
  """Evaluates a model on `datasets` and writes one JSON per dataset/split.

  Args:
    workdir: the training workdir whose checkpoint is scored; None scores
      `model`, or the shipped model.
    datasets: (name, split) pairs; empty means the config's test_data.
    config: where the data are; None uses the workdir's saved config.
    checkpoint: 'best', 'latest' or a step.
    manual_dirs: dataset name -> its downloaded copy, beside (and before)
      config.manual_dirs.
    tta: average flipped predictions.
    save_images: write per-image pictures.
    batch_size: images per device call.
    model: without workdir, a model file (.onnx or .safetensors).
    output_dir: where the JSON files go; default WORKDIR/eval, or eval/
      without a workdir.
    validation: instead of `datasets`, score the config's validation data
      (its carve-out of train_data, or validation_data): where TTA, models
      or recipes are compared, as the test sets choose nothing.
    overwrite: replace existing JSON files; without it they are listed and nothing is scored.

  Returns:
    One result (the JSON written) per dataset/split.
  """
  if workdir is None and config is None:
    raise errors.ConfigError(
        'Without --workdir, give --config to say where the test sets are'
        ' (e.g. --config=configs/polyp.py --manual_dirs=NAME=FOLDER,...).')
  if validation and datasets:
    raise errors.ConfigError(
        '--validation scores the config\'s validation data and --datasets'
        ' names other sets: give one of them.')
  data_plan = DataPlan.from_config(
      config or workdir_config.load_config(workdir)).with_manual_dirs(manual_dirs or {})
  if not validation:
    datasets = datasets or list(data_plan.test)
    if not datasets:
      raise errors.ConfigError(
          'Nothing to evaluate: give --datasets=NAME:SPLIT,... or set'
          ' config.test_data.')
  predictor = predictor_lib.Predictor.from_flags(workdir, model, checkpoint,
                                             batch_size)
  # (dataset, split, file stem, examples), each found (or prepared) before any is scored.
  targets = [_validation_target(data_plan)] if validation else [
      (name, split, f'{name}-{split}',
       pipeline.examples(data_plan, [specs.DataSpec(name, split)]))
      for name, split in datasets]
  output_dir = output_dir or os.path.join(workdir or '.', 'eval')
  # Before any scoring: an unwritable folder or existing results are named now, not after the work.
  outputs.check_folder(output_dir, '--output_dir')
  stems = [target[2] + ('-tta' if tta else '') for target in targets]
  outputs.refuse_existing([os.path.join(output_dir, f'{stem}.json') for stem in stems], overwrite=overwrite,
                          setting='--output_dir')
  outputs.prepare_folder(output_dir, '--output_dir')
  results = []
  for name, split, stem, examples in targets:
    stem += '-tta' if tta else ''
    result = {
        'dataset': name, 'split': split, 'examples': examples.describe(),
        'model': predictor.config.model,
        # Which checkpoint of the workdir; a model file (or the shipped one) is one: its step says which.
        'checkpoint': str(checkpoint) if workdir else os.path.basename(model or 'shipped'),
        'checkpoint_step': predictor.step, 'tta': tta, 'threshold': scoring.THRESHOLD,
        **scoring.evaluate_split(
            predictor, examples, tta=tta,
            image_folder=os.path.join(output_dir, stem) if save_images
            else None),
    }
    path = os.path.join(output_dir, f'{stem}.json')
    outputs.write_text(path, json.dumps(result, indent=2), overwrite=overwrite, setting='--output_dir')
    logging.info('Wrote %s.', path)
    results.append(result)
  return results


def _validation_target(data_plan: DataPlan) -> tuple[str, str, str, pipeline.Examples]:
  """('validation', 'carve-out' or the validation_data, file stem, examples), the datasets prepared."""
  pipeline.prepare_if_needed(data_plan)  # The carve-out is drawn from the training data.
  examples = pipeline.validation_examples(data_plan)
  if examples is None:
    raise errors.ConfigError(
        "--validation: the config has no validation data (validation_fraction=0"
        " and validation_data=''). Set one of them as in training, or give"
        ' --datasets.')
  split = 'carve-out' if data_plan.validation_fraction > 0 else data_plan.named(data_plan.validation)
  return 'validation', split, 'validation', examples
