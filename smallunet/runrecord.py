"""What a training run records about itself, so that nobody types it in later.

Each time a Trainer runs, it adds a *leg* to its record: the steps it trained, the wall
time it took, its threads and processes, its precision, the machine and the command.
The record travels in the training checkpoint's metadata (``"run_legs"``), so a run
resumed five times still knows all six legs, and ``scripts/export_pretrained.py`` sums
them into the manifest's segment.

    rec = RunRecord.from_json(meta.get("run_legs"))
    rec.begin(step=1200, threads=1, processes=1, precision="bf16", machine=..., command=...)
    ...                                      # train
    rec.end(step=1500)                       # or rec.snapshot(step) while still running
    rec.summary(since_step=1200)             # {"minutes": ..., "threads": 1, ...}
"""
from __future__ import annotations

import json
import time


class RunRecord:
    """The legs of one training run: a list of dicts, newest last."""

    def __init__(self, legs: list[dict] | None = None):
        self.legs = [dict(leg) for leg in (legs or [])]
        self._t0 = None

    @classmethod
    def from_json(cls, text: str | None) -> "RunRecord":
        return cls(json.loads(text) if text else [])

    def begin(self, step: int, **how) -> None:
        """A new leg starts at ``step``; ``how`` names threads, processes, precision,
        machine and command."""
        self.legs.append(dict(start_step=step, end_step=step, seconds=0.0, **how))
        self._t0 = time.time()

    def snapshot(self, step: int) -> None:
        """Bring the running leg's end step and wall time up to now."""
        if self._t0 is not None:
            self.legs[-1]["end_step"] = step
            self.legs[-1]["seconds"] = round(time.time() - self._t0, 1)

    def end(self, step: int) -> None:
        self.snapshot(step)
        self._t0 = None

    def to_json(self) -> str:
        return json.dumps(self.legs)

    def summary(self, since_step: int) -> dict:
        """The legs that trained past ``since_step``, summed: minutes of wall time, and
        the threads, processes, precision, machine and command (one value where every
        leg agrees, else the list of each leg's)."""
        legs = [leg for leg in self.legs if leg["end_step"] > since_step]
        if not legs:
            raise ValueError(f"no leg of this run trained past step {since_step} "
                             f"(legs end at {[leg['end_step'] for leg in self.legs]})")
        out = {"minutes": round(sum(leg["seconds"] for leg in legs) / 60, 1), "legs": len(legs)}
        for key in ("threads", "processes", "precision", "machine", "command"):
            values = [leg.get(key) for leg in legs]
            out[key] = values[0] if all(v == values[0] for v in values) else values
        return out
