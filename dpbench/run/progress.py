"""Progress reporters: rich bars on stderr for people at a terminal, plain timed lines for batch logs (Slurm,
nohup, CI), a silent one for tests."""
from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class SilentTask:
    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


class SilentProgress:
    def task(self, description: str, total: int | None) -> SilentTask:
        return SilentTask()

    def log(self, message: str) -> None:
        pass


class RichTask:
    def __init__(self, progress: Progress, description: str, total: int | None) -> None:
        self.progress = progress
        self.id = progress.add_task(description, total=total, status="")

    def advance(self, n: int = 1, **fields: Any) -> None:
        status = "  ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        kwargs = {"status": status} if status else {}
        self.progress.update(self.id, advance=n, **kwargs)

    def close(self) -> None:
        task = self.progress.tasks[self.id] if self.id < len(self.progress.tasks) else None
        if task is not None and task.total is None:
            self.progress.update(self.id, total=1, completed=1)
        elif task is not None:
            self.progress.update(self.id, completed=task.total)
        self.progress.stop_task(self.id)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


class RichProgress:
    """One rich Progress on stderr; each stage is a task line, showing e.g. eps spent so far."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            console=self.console,
        )

    def __enter__(self) -> "RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def task(self, description: str, total: int | None) -> RichTask:
        return RichTask(self.progress, description, total)

    def log(self, message: str) -> None:
        self.progress.console.print(message)


PLAIN_INTERVAL_S = 30.0


class PlainTask:
    """One stage, reported as a plain line when it starts, every `interval` seconds and when it ends."""

    def __init__(self, stream: TextIO, description: str, total: int | None, interval: float) -> None:
        self.stream, self.description, self.total, self.interval = stream, description, total, interval
        self.done, self.fields = 0, {}
        self.started = self.last = time.monotonic()
        self._line("started")

    def _line(self, event: str) -> None:
        elapsed = time.monotonic() - self.started
        rate = f", {self.done / elapsed:.3g}/s" if elapsed > 0 and self.done else ""
        if rate and event == "at" and self.total is not None and self.done < self.total:
            rate += f", about {(self.total - self.done) * elapsed / self.done:.0f} s left"
        of = f"/{self.total}" if self.total is not None else ""
        extra = "".join(f", {k}={_fmt(v)}" for k, v in self.fields.items())
        print(f"[dpbench] {self.description}: {event} {self.done}{of}{extra}, elapsed {elapsed:.0f} s{rate}",
              file=self.stream, flush=True)

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        self.fields.update(fields)
        if time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            self._line("at")

    def close(self) -> None:
        self._line("done")


class PlainProgress:
    """Progress for a log file: no terminal control codes, a line per stage every 30 s or so."""

    def __init__(self, stream: TextIO | None = None, interval: float = PLAIN_INTERVAL_S) -> None:
        self.stream, self.interval = stream or sys.stderr, interval

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def task(self, description: str, total: int | None) -> PlainTask:
        return PlainTask(self.stream, description, total, self.interval)

    def log(self, message: str) -> None:
        print(message, file=self.stream, flush=True)


def make_progress():
    """Rich bars when stderr is a terminal; plain timed lines otherwise (a batch job's log says what it does)."""
    return RichProgress() if sys.stderr.isatty() else PlainProgress()
