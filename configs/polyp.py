"""The polyp benchmark protocol of PraNet (MICCAI 2020) and the papers after it, from scratch: the shipped recipe.

Trains on the benchmark's 900 Kvasir-SEG + 550 CVC-ClinicDB images (`pranet_train`: the folders must hold the complete
official downloads) and tests on Kvasir-SEG (100) and CVC-ClinicDB (62) `pranet_test`, CVC-ColonDB (380),
ETIS-LaribPolypDB (196) and CVC-300 (60), `all` of each. Test images choose nothing: a 10% carve-out of the training
images (chosen by seed, never trained on) only monitors the run and marks the 'best' checkpoint, and the schedule is
fixed. Network: the UNet++ (`model='unetpp'`), which beat the package's ResUNet++ on the carve-out under this recipe
(`--config.model=resunetpp` trains that one). Recipe: 288x384, batch 16, AdamW 3e-3 with 300 warm-up steps and cosine
decay, bfloat16, BatchNorm momentum 0.9, PraNet's structure loss over the four heads, the original augmentation, 45
epochs (3,645 steps). Every run behind it: docs/records/RECIPES.md.

  resunetpp train --config=polyp --workdir=workdirs/polyp \
      --config.manual_dirs=kvasir_seg=/data/Kvasir-SEG,cvc_clinicdb=/data/CVC-ClinicDB,\
cvc_colondb=/data/CVC-ColonDB,etis_larib=/data/ETIS-LaribPolypDB,cvc_300=/data/CVC-300
  python -m resunetpp_jax.main --config=configs/polyp.py --workdir=workdirs/polyp --config.manual_dirs=...
  resunetpp evaluate --workdir=workdirs/polyp

Expected: 6.2 minutes on one H200; test mDice .840 Kvasir-SEG and .844 CVC-ClinicDB (run 37 of RECIPES.md, the
shipped model).
"""
from resunetpp_jax.config import defaults


def get_config():
  config = defaults.get_default_config()
  config.model = 'unetpp'
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
