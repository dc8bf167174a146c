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

Recipe: 352x352 (PraNet's input), batch 16, AdamW (weight decay 1e-4) at 1e-3 with 300 warm-up steps and cosine
decay, bfloat16 compute, BatchNorm momentum 0.9 (the averages keep up with a short run), Dice over the four heads,
the original augmentation, 60 epochs of 1,305 images (81 steps each, 4,860 steps). Sized for the 10-minute goal of
issue 10 on one H100/H200: ~78,000 images at an estimated 230-260 images/s (bf16 at batch 8 and 32 measured 234
and 286 images/s at 288x384 on an H100, scripts/PERF.md) is 5-6 minutes, beside compile and data preparation.
Expected result: not yet measured.
"""
from resunetpp_jax import default_config


def get_config():
  config = default_config.get_default_config()
  config.train_data = 'kvasir_seg:pranet_train+cvc_clinicdb:pranet_train'
  config.validation_data = ''
  config.validation_fraction = 0.1
  config.test_data = ('kvasir_seg:pranet_test,cvc_clinicdb:pranet_test,cvc_colondb:all,etis_larib:all,'
                      'cvc_300:all')
  config.image_size = (352, 352)
  config.augment = 'original'
  config.batch_size = 16
  config.num_epochs = 60
  config.optimizer = 'adamw'
  config.learning_rate = 1e-3
  config.schedule = 'warmup_cosine'
  config.warmup_steps = 300
  config.dtype = 'bfloat16'
  config.bn_momentum = 0.9
  config.loss = 'dice'
  # A fixed schedule: the carve-out's loss neither lowers the learning rate nor stops the run.
  config.plateau_patience = 0
  config.early_stop_patience = 0
  config.num_workers = 8
  return config
