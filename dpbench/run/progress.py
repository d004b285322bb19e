"""Progress reporters: rich bars on stderr for people, a silent one for tests and --quiet."""
from __future__ import annotations

import math
from typing import Any

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
