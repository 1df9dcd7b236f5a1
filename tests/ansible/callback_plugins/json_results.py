# A stdout callback for tests/ansible.rs: prints every task's result per host
# as one JSON document at the end of the run, in the layout of the json
# callback of the ansible.posix collection ({"plays": [{"tasks": [{"task":
# {"name"}, "hosts": {HOST: RESULT}}]}], "stats": {HOST: {...}}}), which
# ansible-core itself does not ship.
from __future__ import annotations

import json

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: json_results
type: stdout
short_description: every task's result per host, as JSON
description: For ferry's test suite.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "json_results"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.plays = []

    def v2_playbook_on_play_start(self, play):
        self.plays.append({"play": {"name": play.get_name()}, "tasks": []})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.plays[-1]["tasks"].append({"task": {"name": task.get_name()}, "hosts": {}})

    def _record(self, result, **extra):
        res = dict(result._result)
        res.update(extra)
        tasks = self.plays[-1]["tasks"]
        for t in reversed(tasks):
            if t["task"]["name"] == result._task.get_name():
                t["hosts"][result._host.get_name()] = res
                return
        tasks.append({"task": {"name": result._task.get_name()}, "hosts": {result._host.get_name(): res}})

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, failed=True, _ignore_errors=ignore_errors)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        summary = {h: stats.summarize(h) for h in sorted(stats.processed)}
        self._display.display(json.dumps({"plays": self.plays, "stats": summary}, indent=2, default=str))
