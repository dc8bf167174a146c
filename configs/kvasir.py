"""The original recipe on Kvasir-SEG: 288x384, batch 8, NAdam 1e-5, Dice over 4 heads, 250 epochs.

Run:
  python -m resunetpp_jax.main --config=configs/kvasir.py --workdir=workdirs/kvasir \
      --config.manual_dirs=kvasir_seg=/path/to/Kvasir-SEG

Data: the official Kvasir-SEG download (`images/*.jpg`, `masks/*.jpg`) or the PraNet layout, split 80/10/10 at
random with seed 42 as the original did (800/100/100: `train` to train, `valid` to validate, `test` to evaluate).
Augmentation: the original's 25 transforms plus identity, drawn online per example per epoch; `epoch_multiplier=26`
reproduces the original's epoch length (26 x 800 images).
The validation loss drives the learning-rate plateau (/10 after 5 evaluations) and early stopping (after 20).

Expected time: up to 650,000 steps (250 epochs x 2,600 steps) unless early stopping ends it first; at the bf16
step rates measured back to back at batch 8 (scripts/PERF.md: 234 img/s on an H100, 260 on an H200) that is about
6.2 h on an H100 and 5.5 h on an H200 with --config.dtype=bfloat16; float32 ran at about half the bf16 rate
(PERF.md, call A). The input pipeline makes ~56 images/s per worker core with the original augmentation (PERF.md),
so the 8 workers below feed the bf16 step with room to spare; lower --config.num_workers on a host with fewer cores.
Expected result: not yet measured with this code (no full run has been made).
"""
from resunetpp_jax import default_config


def get_config():
  config = default_config.get_default_config()
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
