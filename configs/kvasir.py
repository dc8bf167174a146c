"""The original Keras recipe on Kvasir-SEG: 288x384, batch 8, NAdam 1e-5, Dice over 4 heads, 250 epochs.

Data: the official Kvasir-SEG download (`images/*.jpg`, `masks/*.jpg`) or the PraNet layout, split 80/10/10 with seed
42 as the original did (800/100/100: `train`, `valid`, `test`). Augmentation: the original's 25 transforms plus
identity, drawn online per example per epoch; `epoch_multiplier=26` keeps the original's epoch (26 x 800 images). The
validation loss drives the learning-rate plateau (/10 after 5 evaluations) and early stopping (after 20). The 8
data-loader workers (~56 images/s each) feed a GPU's bf16 step; lower --config.num_workers on a host with fewer cores.

  resunetpp train --config=kvasir --workdir=workdirs/kvasir --config.manual_dirs=kvasir_seg=/path/to/Kvasir-SEG
  python -m resunetpp_jax.main --config=configs/kvasir.py --workdir=workdirs/kvasir \
      --config.manual_dirs=kvasir_seg=/path/to/Kvasir-SEG

Expected: up to 650,000 steps (250 x 2,600) unless early stopping ends it, about 6 h on an H100 or 5.5 h on an H200
with --config.dtype=bfloat16 at the step rates of docs/records/PERF.md (float32 about half as fast); result not yet
measured (no full run has been made).
"""
from resunetpp_jax.config import defaults


def get_config():
  config = defaults.get_default_config()
  config.train_data = 'kvasir_seg:train'
  config.validation_data = 'kvasir_seg:valid'
  config.test_data = 'kvasir_seg:test'
  config.image_size = (288, 384)
  config.augment = 'original'
  config.epoch_multiplier = 26
  config.batch_size = 8
  config.num_epochs = 250
  config.learning_rate = 1e-5
  config.loss = 'dice'
  config.num_workers = 8
  return config
