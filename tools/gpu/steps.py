"""Runs the GPU check's commands: logged, side by side, within a budget."""
import os
import os.path as osp
import signal
import subprocess
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class Steps:
    """Runs commands in the repo root, logged, within a time budget."""

    def __init__(self, log_path: str, started: float, budget: Optional[float]):
        self.log_path = log_path
        self.deadline = None if not budget else started + budget
        self._lock = threading.Lock()

    def run(self,
            name: str,
            command: List[str],
            env: Optional[Dict[str, str]] = None,
            reserve: float = 20.0) -> Tuple[Optional[int], str]:
        """``(exit code, output)``; the code is None when the budget had
        no time left for it or it ran out (the process group is killed)."""
        return self.run_together([(name, command, env)], reserve)[0]

    def run_together(self,
                     jobs: List[Tuple[str, List[str], Optional[Dict]]],
                     reserve: float = 20.0):
        """Run ``(name, command, env)`` jobs at the same time; returns
        ``(exit code, output)`` of each, as :meth:`run`."""
        end = None if self.deadline is None else self.deadline - reserve
        if end is not None and end - time.time() < 10:
            for name, _, _ in jobs:
                print(f'[gpu-check] {name}: no time left in the budget')
            return [(None, '')] * len(jobs)
        start = time.time()
        started = []
        for name, command, env in jobs:
            out = tempfile.TemporaryFile('w+')
            proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env={
                    **os.environ,
                    **(env or {})
                },
                start_new_session=True)
            started.append((name, command, proc, out))
        results = []
        for name, command, proc, out in started:
            try:
                code = proc.wait(None if end is
                                 None else max(1.0, end - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
            out.seek(0)
            output = out.read()
            out.close()
            with self._lock, open(self.log_path, 'a') as log:
                log.write(f'\n===== {name}: {" ".join(command)}\n{output}')
            status = 'ran out of time' if code is None else f'exit {code}'
            print(
                f'[gpu-check] {name}: {status} '
                f'({time.time() - start:.0f} s)',
                flush=True)
            if code != 0:
                print('\n'.join(output.splitlines()[-15:]), flush=True)
            results.append((code, output))
        return results
