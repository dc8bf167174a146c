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

Network: UNet++ (`model='unetpp'`, Zhou et al. 2018, its four deep-supervision heads trained), not the package's
ResUNet++: under this recipe on one H200 it scored validation carve-out mDice .870 at original size, against .823 for
the ResUNet++ and .836 for the U-Net (runs 35-37 of configs/RECIPES.md, one seed each); it is the shipped model.
`--config.model=resunetpp` trains the original network with the same recipe (8.2 minutes, run 35).

Recipe: 288x384 (CVC-ClinicDB's own size; the network's measured speeds are at it), batch 16, AdamW (weight decay
1e-4) at 3e-3 with 300 warm-up steps and cosine decay, bfloat16 compute, BatchNorm momentum 0.9 (the averages keep up
with a short run), PraNet's structure loss (weighted BCE + weighted IoU) over the four heads, the original
augmentation, 45 epochs of 1,305 images (81 steps each, 3,645 steps, 58,320 images). The choices and the runs behind
them: configs/RECIPES.md.
Expected time and result (run 37 of configs/RECIPES.md, 8245bb3, one H200, 2026-12-04,
scripts/device/train_polyp.sh): 6.2 minutes in the training processes to the final checkpoint: the run was stopped at
its call's deadline after step 3,157 (5.1 minutes: start-up 0.1, the data already prepared by the U-Net run before it,
compile 0.6, the first 50 steps 0.9, then about 262 images/s) and resumed on the same machine (1.1). Validation Dice
.893 at the training size; at original size, validation mDice .870, test mDice Kvasir-SEG .840 and CVC-ClinicDB .844
(the shipped model, README "Results"), short of issue 10's .88 and .90.
"""
from resunetpp_jax import default_config


def get_config():
  config = default_config.get_default_config()
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
