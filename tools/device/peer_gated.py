"""Runs the PyTorch peer's benchmark with a gate between its warm-up and its timed steps.

  python3 tools/device/peer_gated.py --peer=.carry/torch_peer.py --mode=compile --batch=8 --gate=/tmp/gate \
      --out=results.jsonl

torch.compile's warm-up (minutes of CPU work) can then overlap our own XLA compile in `gpu_check.sh`, while the
timed steps wait until `--gate` exists, so that no other GPU work runs beside them. Everything else is the peer's
own `time_variant`; the wait is taken out of the reported warm-up time (and given as `gate_wait_s`).

Two things keep the background process off the GPU while others are timed: the peer's FLOP count (an eager float32
forward and backward at the full batch, 68 GiB at batch 32 on an H200) is replaced by the value the same FlopCounter
gave (`--flops_per_image`), and the process returns its cached GPU memory before it waits.
"""
import argparse
import importlib.util
import json
import os
import sys
import time


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--peer', required=True, help='Path of torch_peer.py.')
  parser.add_argument('--mode', required=True)
  parser.add_argument('--batch', type=int, required=True)
  parser.add_argument('--hw', default='288x384')
  parser.add_argument('--steps', type=int, default=15)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--gate', required=True, help='The timed steps start once this file exists.')
  parser.add_argument('--gate_timeout', type=float, default=900.0)
  parser.add_argument('--out', required=True)
  parser.add_argument('--flops_per_image', type=int, default=432574106688,
                      help="The peer's count_flops at 288x384 (3460592853504 at batch 8, H200, 2026-11-26).")
  args = parser.parse_args()

  spec = importlib.util.spec_from_file_location('torch_peer', args.peer)
  peer = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(peer)
  torch = peer.torch
  def count_flops(model, x, y):  # Convolutions dominate: the count scales with the number of pixels.
    del model, y
    return round(args.flops_per_image * x.shape[0] * x.shape[2] * x.shape[3] / (288 * 384))

  peer.count_flops = count_flops
  torch.backends.cudnn.benchmark = True  # As the peer's main() sets them.
  torch.backends.cuda.matmul.allow_tf32 = True
  torch.backends.cudnn.allow_tf32 = True

  synchronize = torch.cuda.synchronize
  waited = []

  def synchronize_then_wait_once(*a, **kw):
    synchronize(*a, **kw)
    # The peer's first own synchronisation ends its warm-up; torch.compile also synchronises while it compiles.
    if not waited and sys._getframe(1).f_code is peer.time_variant.__code__:  # pylint: disable=protected-access
      print(f'warm-up done; waiting for {args.gate}', flush=True)
      torch.cuda.empty_cache()
      start = time.perf_counter()
      while not os.path.exists(args.gate) and time.perf_counter() - start < args.gate_timeout:
        time.sleep(0.05)
      waited.append(time.perf_counter() - start)

  torch.cuda.synchronize = synchronize_then_wait_once
  height, width = map(int, args.hw.split('x'))
  try:
    record = peer.time_variant('resunetpp', args.batch, height, width, args.mode, args.steps, args.warmup)
    record['warmup_s'] -= waited[0]
    record['gate_wait_s'] = waited[0]
    record['flops_source'] = '--flops_per_image'
  except Exception as error:  # pylint: disable=broad-except  # Reported in the results, as the peer does.
    record = dict(model='resunetpp', mode=args.mode, batch=args.batch, error=repr(error)[:300])
  line = json.dumps(record)
  print(line, flush=True)
  with open(args.out, 'a') as f:
    f.write(line + '\n')


if __name__ == '__main__':
  main()
