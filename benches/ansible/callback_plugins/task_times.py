# A notification callback for benches/ansible.sh: the wall time of each task
# (from its start to the last host's result, as profile_tasks of the
# ansible.posix collection measures it; ansible-core ships no such plugin) and
# the run's stats per host, written as one JSON document to the file named by
# FERRY_BENCH_TIMES when the play ends. Enable with
# ANSIBLE_CALLBACKS_ENABLED=task_times.
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: task_times
type: aggregate
short_description: per-task wall times as JSON, for ferry's benchmarks
description: For benches/ansible.sh.
requirements:
  - enable in configuration (ANSIBLE_CALLBACKS_ENABLED=task_times)
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start = time.monotonic()
        self.tasks = []  # [name, started, last result]

    def v2_playbook_on_task_start(self, task, is_conditional):
        now = time.monotonic()
        self.tasks.append([task.get_name(), now, now])

    def _result(self, result, **kwargs):
        if self.tasks:
            self.tasks[-1][2] = time.monotonic()

    v2_runner_on_ok = _result
    v2_runner_on_failed = _result
    v2_runner_on_unreachable = _result
    v2_runner_on_skipped = _result

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("FERRY_BENCH_TIMES")
        if not path:
            return
        doc = {
            "play_s": time.monotonic() - self.start,
            "tasks": [{"name": n, "s": end - start} for n, start, end in self.tasks],
            "stats": {h: stats.summarize(h) for h in sorted(stats.processed)},
        }
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
