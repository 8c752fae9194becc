"""A node agent that never answers a run: what a wedged engine or node looks like to the head."""

from __future__ import annotations

import os
import time


class HungAgent:
    def __init__(self, *_args: object) -> None:
        self.started = time.time()

    def hello(self) -> dict:
        return {"pid": os.getpid(), "started": self.started}

    def run(self, _request: dict) -> dict:
        time.sleep(3600)
        return {}

    def sweep(self, _run_id: str | None = None) -> list[str]:
        return []
