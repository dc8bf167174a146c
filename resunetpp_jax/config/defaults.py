"""Every configuration key, with its default and meaning.

Config files in `configs/` start from `get_default_config()` and override what
their recipe changes; `config_validation.validate` checks the result before
anything is built or compiled.
"""
import json

import ml_collections


def get_default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seeds parameters, dropout-free model RNG, shuffling and augmentation.

  # --- Data ---------------------------------------------------------------
  # NAME:SPLIT items (resunetpp_jax.data.specs): NAME a dataset of resunetpp_jax.data.registry,
  # SPLIT one of its splits or 'all'. Training reads the '+'-joined items as one stream.
  c.train_data = 'synthetic_polyps:train'
  # Validation during training, one of: a seeded carve-out of train_data (validation_fraction > 0:
  # that fraction of each training split, chosen by seed and excluded from training); other examples
  # (validation_data, '+'-joined items); or none (both unset: no evaluation while training, so the
  # plateau and early stopping never act and the last checkpoint is also the 'best').
  c.validation_data = 'synthetic_polyps:valid'
  c.validation_fraction = 0.0
  c.test_data = 'synthetic_polyps:test'  # What `evaluate` scores by default: ','-separated items, each apart.
  c.manual_dirs = ''  # NAME=FOLDER,...: each real dataset's download (needed until it is prepared).
  c.data_dir = ''  # TFDS data dir; '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.image_size = (288, 384)  # (height, width); both divisible by 16.
  c.augment = 'original'  # 'original' (SPEC's 25 transforms + identity), 'light', 'none'.
  c.epoch_multiplier = 1  # Passes over the training split per epoch (26 = the original's epoch).
  c.num_workers = 2  # grain worker processes per host (0 = in the main process).
  c.prefetch_buffer_size = 2  # Per-worker prefetch, in batches.

  # --- Model --------------------------------------------------------------
  c.model = 'resunetpp'
  c.filters = (32, 64, 128, 256, 512)
  c.num_classes = 1
  c.deep_supervision = True  # 4 heads on X[0,1..4]; False keeps the last one.
  c.dtype = 'float32'  # Compute dtype: 'float32' or 'bfloat16'; parameters stay float32.
  # BatchNorm's running-average momentum (Keras' 0.99, as the original). Short runs
  # want less (0.9): the averages that inference uses trail the weights by ~1/(1-momentum) steps.
  c.bn_momentum = 0.99
  # Ablation switches of the ResUNet++ (model='resunetpp' only; issue 28, docs/records/ablation_resunetpp.md).
  # The first value of each is the original network (SPEC.md); the second swaps in the UNet++'s part.
  c.resunetpp_block = 'preact_residual'  # 'preact_residual' (BN-ReLU-conv x2 + 1x1 shortcut) or 'plain' (the
  #   UNet++'s (conv-BN-ReLU) x2, no shortcut).
  c.resunetpp_attention = 'cbam'  # 'cbam' (channel then spatial gate in every block) or 'none'.
  c.resunetpp_downsample = 'stride'  # 'stride' (stride-2 first conv of encoder blocks) or 'pool' (2x2 max pool).
  c.resunetpp_upsample = 'nearest_conv'  # 'nearest_conv' (nearest 2x + conv3x3 + ReLU) or 'transpose' (2x2
  #   transposed conv, stride 2).

  # Initial weights: '' from scratch (seeded); 'shipped' (the package's polyp model) or a model file written by
  # resunetpp_jax.pretrained: its parameters and BatchNorm statistics, to fine-tune (resunetpp_jax.training.fine_tuning).
  c.init_from = ''

  # --- Loss and optimizer -------------------------------------------------
  c.loss = 'dice'  # See resunetpp_jax.models.losses.LOSSES for the names.
  c.head_l2 = 1e-4  # L2 penalty on the supervision heads' kernels (Keras' l2(1e-4)).
  c.optimizer = 'nadam'  # optax.nadam: Adam with Nesterov momentum (see README).
  c.learning_rate = 1e-5
  c.schedule = 'constant'  # 'constant', 'cosine', 'warmup_cosine'.
  c.warmup_steps = 0
  c.batch_size = 8  # Global batch, split over all devices of all hosts.
  # Moving average of the weights (and BatchNorm statistics), nnx.EMA: 0 = none; else the decay per step, and
  # validation, the checkpoints' 'best', evaluate, predict and exports use the average. Its memory is
  # ~decay**steps of the initial weights: keep decay**num_train_steps small (0.999 over 3,645 steps: 2.6%).
  c.ema_decay = 0.0
  c.num_epochs = 250
  c.num_train_steps = -1  # > 0 overrides num_epochs.

  # --- Plateau schedule and early stopping (on the validation loss) ------
  c.plateau_patience = 5  # Evaluations without improvement before lr /= plateau_factor (0 = never).
  c.plateau_factor = 10.0
  c.early_stop_patience = 20  # Evaluations without improvement before stopping (0 = never).

  # --- Loop cadence ------------------------------------------------------
  c.log_every_steps = 50
  c.eval_every_steps = -1  # -1: once per epoch.
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3  # Last K.
  c.keep_best_checkpoints = 2  # Best M by validation Dice.
  c.num_eval_images_logged = 8  # Validation overlays written to TensorBoard.

  # --- Runtime -------------------------------------------------------------
  c.compilation_cache_dir = '~/.cache/resunetpp_jax/xla'  # '' disables the persistent cache.
  return c


def from_json(text: str) -> ml_collections.ConfigDict:
  """A saved config (a model file's metadata) over the defaults: keys added since it was saved read as their
  defaults, and JSON's lists become the defaults' tuples again."""
  config = get_default_config()
  config.update(json.loads(text))
  return config
