"""The table of one `gpu_check.sh` call: every measurement, then ours over the peer at each batch size.

  python3 tools/device/gpu_check_table.py results.jsonl

Reads the JSON lines that `scripts/benchmark.py` (ours) and the PyTorch peer wrote in the same call. Ratios use
the synchronised median step of both (the peer times each step between CUDA events and synchronises).
"""
import json
import sys


def load(path: str) -> tuple[list[dict], list[dict]]:
  ours, peer = [], []
  with open(path) as f:
    for line in f:
      record = json.loads(line)
      if record.get('step') == 'profile':
        continue
      (peer if 'mode' in record else ours).append(record)
  return ours, peer


def table(ours: list[dict], peer: list[dict]) -> str:
  rows = [f'{"who":<28}{"batch":>6}{"img/s":>9}{"ms/step":>9}{"pipelined":>11}{"dispatch ms":>13}'
          f'{"compile/warm-up s":>19}{"start to step 1 s":>19}']
  for r in peer:
    if 'error' in r:
      rows.append(f'{"peer " + r["mode"]:<28}{r["batch"]:>6}  error: {r["error"][:90]}')
      continue
    rows.append(f'{"peer " + r["mode"]:<28}{r["batch"]:>6}{r["img_per_s"]:>9.1f}{1e3 * r["step_s_median"]:>9.1f}'
                f'{"":>11}{"":>13}{r["warmup_s"]:>19.1f}')
  for r in ours:
    name = f'{r["label"]} {r["dtype"]}' + (f' {",".join(r["overrides"])}' if r.get('overrides') else '')
    start = r.get('process_start_to_first_step_s')
    rows.append(f'{name[:27]:<28}{r["batch"]:>6}{r["img_per_s"]:>9.1f}{r["step_ms_median"]:>9.1f}'
                f'{r.get("pipelined_img_per_s", float("nan")):>11.1f}{r.get("dispatch_ms_median", float("nan")):>13.2f}'
                f'{r["lower_s"] + r["compile_s"]:>19.1f}{"" if start is None else f"{start:.1f}":>19}')
  best = {}
  for r in ours:
    if r['label'] == 'ours' and not r.get('overrides'):
      best[r['batch']] = max(best.get(r['batch'], 0.0), r['img_per_s'])
  for r in peer:
    if 'error' not in r and r['batch'] in best:
      rows.append(f'ours / peer {r["mode"]} at batch {r["batch"]}: {best[r["batch"]] / r["img_per_s"]:.2f}x')
  return '\n'.join(rows)


if __name__ == '__main__':
  print(table(*load(sys.argv[1])))
