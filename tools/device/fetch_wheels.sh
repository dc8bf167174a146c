#!/usr/bin/env bash
# Downloads into .whl/ the cp312 x86-64 wheels that the GPU image lacks (its package list: the device tool's
# KINDS.md), pinned to the versions this project is tested with. Run here, once per checkout; .whl/ is
# git-ignored and travels with `carry: [".whl"]`. Pure-Python packages published only as source are built here.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS=(
  albucore==0.0.24 albumentations==2.0.8 annotated-types==0.8.0 array-record==0.8.6 dm-tree==0.1.10
  docstring-parser==0.18.0 googleapis-common-protos==1.76.0 grain==0.2.18 immutabledict==4.3.1
  importlib-resources==7.1.0 ml-collections==1.1.0 portpicker==1.6.0 pydantic==2.14.4 pydantic-core==2.50.5
  simple-parsing==0.1.9 simsimd==6.5.16 stringzilla==5.3.2 tensorboardx==2.6.5 tensorflow-datasets==4.9.10
  tensorflow-metadata==1.21.0 termcolor==3.3.0 toml==0.10.2 typing-inspection==0.4.5
)
SOURCE_ONLY=(promise==2.3)
rm -rf .whl && mkdir -p .whl
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
python3 -m pip wheel -q --no-deps -w .whl "${SOURCE_ONLY[@]}"
du -sh .whl && ls .whl | wc -l
