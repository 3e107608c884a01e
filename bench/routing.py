"""Routing benchmark: addresses per second on one core (against a bare automaton scan of the
same text, measured in the same run), memory of the compiled index, and placement quality on
the development addresses — honestly, with the development addresses kept out of the
gazetteer that is measured on them.

    .venv/bin/python -m bench.routing [--rounds 5] [--file tests/data/dev_addresses_2016.csv]
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import random
import time
import tracemalloc
from collections import deque
from pathlib import Path

from routing import packaged_city
from routing.evaluate import Report, evaluate, read_labelled
from routing.gazetteer import read_source
from routing.index import Gazetteer
from routing.locate import locate_in

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("address", "address_without_district")


def _gazetteer(src, addresses) -> Gazetteer:
    variant = copy.copy(src)
    variant.addresses = addresses
    return Gazetteer(variant)


def throughput(gz: Gazetteer, texts: list[str], rounds: int) -> dict[str, float]:
    """Best of `rounds` for locate, and for the floor: clean + one automaton scan (no scoring)."""
    def run_locate() -> None:
        for t in texts:
            locate_in(gz, t)

    def run_scan() -> None:
        auto, clean = gz.automaton, gz.cleaner.clean
        for t in texts:
            deque(auto.iter(clean(t)), maxlen=0)   # consume every match, keep none

    best = {}
    for name, fn in (("locate", run_locate), ("baseline_clean_and_scan", run_scan)):
        times = []
        for _ in range(rounds):
            gc.collect()
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        best[name] = len(texts) / min(times)
    best["ratio_locate_to_baseline"] = best["locate"] / best["baseline_clean_and_scan"]
    return best


def index_memory(src) -> dict[str, float]:
    tracemalloc.start()
    gz = Gazetteer(src)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"index_mb_in_memory": current / 1e6, "compile_peak_mb": peak / 1e6,
            "index_mb_pickled": _pickled_size(gz) / 1e6}


def _pickled_size(gz: Gazetteer) -> int:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.pickle"
        gz.save(path)
        return path.stat().st_size


def _merge(a: Report | None, b: Report) -> Report:
    if a is None:
        return b
    for key in ("total", "placed", "correct", "confident", "confident_correct", "seconds"):
        setattr(a, key, getattr(a, key) + getattr(b, key))
    a.confusion.update(b.confusion)
    a.wrong_confident += b.wrong_confident
    return a


def _figures(r: Report) -> dict[str, float]:
    return {"n": r.total, "accuracy": round(r.accuracy, 4), "precision_above": round(r.precision_above, 4),
            "coverage": round(r.coverage, 4), "unplaced": r.total - r.placed}


def quality(src, dev: Path, threshold: float) -> dict[str, dict]:
    base = _gazetteer(src, [])
    dev_texts = {r.address for r in src.addresses}
    others = [a for a in src.addresses if a.address not in dev_texts]   # address points not from the dev file
    out: dict[str, dict] = {}
    idx = list(range(len(read_labelled(dev, base, "address"))))
    random.Random(12319).shuffle(idx)
    halves = [sorted(idx[::2]), sorted(idx[1::2])]
    for column in COLUMNS:
        rows = read_labelled(dev, base, column)
        full_rows = read_labelled(dev, base, "address")
        out[f"{column}: names and aliases only"] = _figures(evaluate(_gazetteer(src, others), rows, threshold))
        # 2-fold cross-validation: the address points of one half, measured on the other
        cv = None
        for k in (0, 1):
            train = [src.addresses[i] for i in halves[1 - k]]
            cv = _merge(cv, evaluate(_gazetteer(src, others + train), [rows[i] for i in halves[k]], threshold))
        out[f"{column}: 2-fold cross-validated address points"] = _figures(cv)
        # learning: replay half as confirmed cases, measure the other half before and after
        gz = _gazetteer(src, others).with_fresh_learning()
        test = [rows[i] for i in halves[1]]
        before = evaluate(gz, test, threshold)
        for i in halves[0]:
            gz.learn(full_rows[i].text, full_rows[i].district_code, point=full_rows[i].point)
        after = evaluate(gz, test, threshold)
        out[f"{column}: learning, before"] = _figures(before)
        out[f"{column}: learning, after replaying the other half"] = _figures(after)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=ROOT / "tests/data/dev_addresses_2016.csv")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/routing.json")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})   # one core
    src = read_source(packaged_city("shenzhen"))
    gz = Gazetteer(src)
    texts = []
    for column in COLUMNS:
        texts += [r.text for r in read_labelled(args.file, gz, column)]
    speed = throughput(gz, texts, args.rounds)
    memory = index_memory(src)
    figures = quality(src, args.file, args.threshold)
    result = {"addresses_timed": len(texts), **{k: round(v, 2) for k, v in {**speed, **memory}.items()},
              "quality": figures}
    print(f"addresses/s on one core   locate {speed['locate']:,.0f}   baseline clean+scan "
          f"{speed['baseline_clean_and_scan']:,.0f}   ratio {speed['ratio_locate_to_baseline']:.3f}")
    print(f"index: {memory['index_mb_pickled']:.2f} MB pickled, {memory['index_mb_in_memory']:.1f} MB in memory "
          f"(compile peak {memory['compile_peak_mb']:.1f} MB)")
    print(f"quality on {args.file.name} at threshold {args.threshold}:")
    for name, f in figures.items():
        print(f"  {name:<62} accuracy {f['accuracy']:.2%}  precision≥thr {f['precision_above']:.2%}  "
              f"coverage {f['coverage']:.2%}  unplaced {f['unplaced']}/{f['n']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
