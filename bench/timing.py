"""Interleaved timing windows: contenders take turns, so the load of a shared machine falls on all
of them alike, and comparisons are medians of per-round ratios rather than ratios of medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras


@dataclass
class Contender:
    """Something timed in windows: ``window()`` does ``work_per_window`` units and returns seconds."""

    name: str
    work_per_window: float
    window: Callable[[], float]
    rates: list[float] = field(default_factory=list)

    def run_window(self) -> None:
        self.rates.append(self.work_per_window / self.window())

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def timed(function: Callable[[], object]) -> Callable[[], float]:
    def window() -> float:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start
    return window


def run_rounds(contenders: list[Contender], rounds: int) -> None:
    """Each round runs one window of every contender, starting one later each round."""
    for round_index in range(rounds):
        run_round(contenders, round_index)


def run_round(contenders: list[Contender], round_index: int) -> None:
    shift = round_index % len(contenders) if contenders else 0
    for contender in contenders[shift:] + contenders[:shift]:
        contender.run_window()


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of the ratio of two contenders' rates in the same round."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def spread(rates: list[float]) -> float:
    """Relative spread of the windows (interquartile range over median), a noise indicator."""
    if len(rates) < 4:
        return (max(rates) - min(rates)) / statistics.median(rates)
    quartiles = statistics.quantiles(rates, n=4)
    return (quartiles[2] - quartiles[0]) / statistics.median(rates)


class FitWindows(keras.callbacks.Callback):
    """Times ``Model.fit`` in windows of ``steps`` batches after ``warmup`` batches, from batch-end
    timestamps, and calls ``between(round)`` after each window: the other contenders run there, while
    fit waits, so the reference and they alternate inside one fit call."""

    def __init__(self, warmup: int, steps: int, rounds: int, between: Callable[[int], None]):
        super().__init__()
        self.warmup, self.steps, self.rounds, self.between = warmup, steps, rounds, between
        self.seconds: list[float] = []
        self._start = 0.0

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps * self.rounds

    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1
        if done < self.warmup:
            return
        now = time.perf_counter()
        if done > self.warmup and (done - self.warmup) % self.steps == 0:
            self.seconds.append(now - self._start)
            self.between(len(self.seconds) - 1)
            if len(self.seconds) == self.rounds:
                self.model.stop_training = True
        if done == self.warmup or (done - self.warmup) % self.steps == 0:
            self._start = time.perf_counter()
