"""One timed save in a fresh process: `python -m benchmarks.save_worker MODEL MODE PATH`.

MODEL is `alexnet` or `synthetic` (about 2 GiB of float32 in 64 tensors); MODE is `bare`
(`torch.save(model.state_dict())`), `bare-fsync` (the same, then fsync), `app` (modelbrowse's
save: atomic, fsync, verified) or `app-noverify`. Prints one JSON line: seconds, peak extra
anonymous memory in bytes during the save, and the state_dict's size.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

SYNTHETIC_TENSORS = 64
SYNTHETIC_BYTES = 2 << 30


def rss_anon() -> int:
    """Anonymous resident memory of this process (file-backed pages, such as mmap, excluded)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_anon()
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_anon())
            time.sleep(0.005)


def build(model_name: str) -> nn.Module:
    torch.manual_seed(0)
    if model_name == "alexnet":
        import torchvision

        return torchvision.models.alexnet()
    per_tensor = SYNTHETIC_BYTES // SYNTHETIC_TENSORS // 4
    model = nn.ParameterList(
        nn.Parameter(torch.empty(per_tensor).uniform_()) for _ in range(SYNTHETIC_TENSORS)
    )
    return model


def main(model_name: str, mode: str, path: str) -> None:
    model = build(model_name)
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if mode.startswith("app"):
        from modelbrowse.core.saving import save_weights
    before = rss_anon()
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    if mode == "bare":
        torch.save(model.state_dict(), path)
    elif mode == "bare-fsync":
        with open(path, "wb") as handle:
            torch.save(model.state_dict(), handle)
            handle.flush()
            os.fsync(handle.fileno())
    else:
        save_weights(model, path, verify=mode == "app")
    seconds = time.perf_counter() - start
    sampler.running = False
    sampler.join()
    peak = max(sampler.peak, rss_anon())
    print(json.dumps({"seconds": seconds, "extra": peak - before, "state": state_bytes}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
