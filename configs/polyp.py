"""The polyp benchmark protocol (PraNet, MICCAI 2020, and the papers after it), from scratch.

Run (a folder per dataset: the official downloads or the PraNet benchmark copies):
  python -m resunetpp_jax.main --config=configs/polyp.py --workdir=workdirs/polyp \
      --config.manual_dirs=kvasir_seg=/data/Kvasir-SEG,cvc_clinicdb=/data/CVC-ClinicDB,\
cvc_colondb=/data/CVC-ColonDB,etis_larib=/data/ETIS-LaribPolypDB,cvc_300=/data/CVC-300
  python -m resunetpp_jax.evaluate --workdir=workdirs/polyp

Data: trains on the benchmark's 900 Kvasir-SEG + 550 CVC-ClinicDB images (`pranet_train`; their folders must hold
every image of the dataset, as the official downloads do, for the split lists to apply) and tests on Kvasir-SEG (100)
and CVC-ClinicDB (62) `pranet_test`, CVC-ColonDB (380), ETIS-LaribPolypDB (196) and CVC-300 (60), `all` of each.
Test images choose nothing: validation is a 10% carve-out of the training images (90 Kvasir-SEG + 55 CVC-ClinicDB,
chosen by seed, never trained on) that only monitors the run and marks the 'best' checkpoint; the schedule is fixed
(warm-up + cosine; no plateau, no early stopping). Training datasets are prepared on the first run; `evaluate`
prepares the test sets from the same manual_dirs (saved in WORKDIR/config.json) and scores them at each image's
original size.

Recipe: 288x384 (CVC-ClinicDB's own size; the network's measured speeds are at it), batch 16, AdamW (weight decay
1e-4) at 3e-3 with 300 warm-up steps and cosine decay, bfloat16 compute, BatchNorm momentum 0.9 (the averages keep up
with a short run), PraNet's structure loss (weighted BCE + weighted IoU) over the four heads, the original
augmentation, 45 epochs of 1,305 images (81 steps each, 3,645 steps, 58,320 images). The choices and the runs behind
them: configs/RECIPES.md.
Expected time and result (run 35 of configs/RECIPES.md, b562fab, one H200, 2026-12-04,
scripts/device/train_polyp.sh): 8.2 minutes from process start to the final checkpoint (start-up and data
preparation 0.4, compile 1.4, the first 50 steps 1.1, the other 3,595 with 45 validations 5.1, the last checkpoint
0.2); validation Dice .845; at original size, mDice Kvasir-SEG .807 and CVC-ClinicDB .795 (the shipped model, README
"Results"), short of issue 10's .88 and .90. The code after it starts the data-loader workers during the compile and
saves at an evaluation only a new best: ~6.3 minutes predicted (scripts/PERF.md, change 11), not yet measured.
"""
from resunetpp_jax import default_config


def get_config():
  config = default_config.get_default_config()
  config.train_data = 'kvasir_seg:pranet_train+cvc_clinicdb:pranet_train'
  config.validation_data = ''
  config.validation_fraction = 0.1
  config.test_data = ('kvasir_seg:pranet_test,cvc_clinicdb:pranet_test,cvc_colondb:all,etis_larib:all,'
                      'cvc_300:all')
  config.image_size = (288, 384)
  config.augment = 'original'
  config.batch_size = 16
  config.num_epochs = 45
  config.optimizer = 'adamw'
  config.learning_rate = 3e-3
  config.schedule = 'warmup_cosine'
  config.warmup_steps = 300
  config.dtype = 'bfloat16'
  config.bn_momentum = 0.9
  config.loss = 'structure'
  # A fixed schedule: the carve-out's loss neither lowers the learning rate nor stops the run.
  config.plateau_patience = 0
  config.early_stop_patience = 0
  config.num_workers = 10  # ~56 images/s each with the original augmentation.
  return config
