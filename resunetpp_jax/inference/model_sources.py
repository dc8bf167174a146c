"""Where a trained model comes from: a training workdir's checkpoint, a model file, or the shipped model.

Every command and the `Predictor` reach trained weights through these functions.
"""
import os

from flax import nnx
import ml_collections

from resunetpp_jax import errors
from resunetpp_jax import models
from resunetpp_jax.checkpoints import checkpointer as checkpointer_lib
from resunetpp_jax.checkpoints import model_file
from resunetpp_jax.checkpoints import workdir_config


def parse_checkpoint(value: str) -> str | int:
  """'best', 'latest' or a step number, from a command-line flag."""
  if value in ('best', 'latest'):
    return value
  if value.isdigit():
    return int(value)
  raise errors.ConfigError(
      f'--checkpoint={value!r}: expected best, latest or a step number (see'
      ' WORKDIR/checkpoints/ for the saved steps).')


def restore_model(workdir: str, config: ml_collections.ConfigDict | None = None,
                  checkpoint: str | int = 'best') -> tuple[nnx.Module, int]:
  """The trained model of a workdir (in eval mode) and the step it was saved at."""
  config = config or workdir_config.load_config(workdir)
  abstract_model = nnx.eval_shape(lambda: models.create_model(config, nnx.Rngs(config.seed)))
  graphdef, abstract_state = nnx.split(abstract_model)
  checkpointer = checkpointer_lib.Checkpointer(workdir, config, read_only=True)
  try:
    step, model_state = checkpointer.restore_model_state(abstract_state, checkpoint)
  finally:
    checkpointer.close()
  model = nnx.merge(graphdef, model_state)
  model.eval()
  return model, step


def load_model(workdir: str | None, checkpoint: str = 'best'
               ) -> tuple[nnx.Module, ml_collections.ConfigDict, str, int | None]:
  """The model to export (a workdir's checkpoint, or without a workdir the packaged model), its config, where it
  came from (for the metadata) and its training step."""
  if workdir is None:
    model, config, values = model_file.load()  # A UserError when the package holds no weights.
    source = f'packaged model {model_file.SHIPPED_WEIGHTS.name} (resunetpp_jax.pretrained)'
    if 'card' in values:
      source += f', model card {values["card"]}'
    return model, config, source, model_file.step_of(values)
  config = workdir_config.load_config(workdir)
  model, step = restore_model(workdir, config, parse_checkpoint(checkpoint))
  return model, config, f'workdir {os.path.abspath(workdir)}, checkpoint {checkpoint}, step {step}', step
