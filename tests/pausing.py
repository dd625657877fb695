"""Hold a run still at a named stage (see pmdcompress/checkpoints.py) and act on it then.

No sleeps and no deadlines: the test blocks until the process reports that it
reached the stage, or until it exits (then the test fails with its output).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PMD = [sys.executable, str(ROOT / "bin" / "pmd")]


class PauseFifos:
    """The two FIFOs of ``$PMD_TEST_PAUSE_DIR``: a paused process reports on one and waits on the other."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.paused, self.resume_fifo = folder / "paused", folder / "resume"
        for fifo in (self.paused, self.resume_fifo):
            if not fifo.exists():
                os.mkfifo(fifo)
        # Opened now and non-blocking: a paused process's open for writing never waits for us.
        self.fd = os.open(self.paused, os.O_RDONLY | os.O_NONBLOCK)
        self.err = b""

    def env(self, stage: str) -> dict:
        return {"PMD_TEST_PAUSE_AT": stage, "PMD_TEST_PAUSE_DIR": str(self.folder)}

    def wait(self, stderr_fd: int | None = None, guard_s: float | None = None) -> tuple[int, str, str]:
        """Block until a process reports ``PID STAGE PATH``; fail if ``stderr_fd`` closes first.

        ``guard_s`` only stops a broken test from hanging forever (no process to watch).
        """
        buffer = b""
        watch = [self.fd] + ([stderr_fd] if stderr_fd is not None else [])
        while not buffer.endswith(b"\n"):
            ready, _, _ = select.select(watch, [], [], guard_s)
            if not ready:
                raise AssertionError(f"nothing reached the stage {self.folder} within the hang guard")
            if self.fd in ready:
                buffer += os.read(self.fd, 4096)
            if stderr_fd is not None and stderr_fd in ready:
                chunk = os.read(stderr_fd, 65536)
                if not chunk:
                    raise AssertionError(f"the process ended before pausing: {self.err.decode()}")
                self.err += chunk
        pid, stage, path = buffer.decode().split(maxsplit=2)
        return int(pid), stage, path.strip()

    def resume(self) -> None:
        """Let the paused process go on."""
        with open(self.resume_fifo, "w"):
            pass

    def close(self) -> None:
        os.close(self.fd)


class PausedRun:
    """``pmd ARGS`` started with ``PMD_TEST_PAUSE_AT=stage``; :meth:`wait_paused` returns once it is there."""

    def __init__(self, args, stage: str, fifo_dir: Path, *, cwd=None, env=None, command=None):
        self.fifos = PauseFifos(fifo_dir)
        run_env = dict(os.environ if env is None else env, **self.fifos.env(stage), PMD_NUM_WORKERS="1",
                       PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen((command or PMD) + [str(a) for a in args], cwd=cwd, env=run_env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid

    def wait_paused(self) -> tuple[int, str, str]:
        """Block until the run (or a worker of it) pauses: ``(pid, stage, path)``; fail if it exits first."""
        return self.fifos.wait(self.proc.stderr.fileno())

    def resume(self) -> None:
        self.fifos.resume()

    def finish(self) -> tuple[int, str]:
        """Wait for the process; its exit code and stderr."""
        _, err = self.proc.communicate()
        self.fifos.close()
        return self.proc.returncode, (self.fifos.err + err).decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        self.fifos.close()


def run_pmd(args, *, cwd=None, env=None) -> tuple[int, str]:
    """``pmd ARGS`` in a subprocess; its exit code and stderr."""
    run_env = dict(os.environ if env is None else env, PMD_NUM_WORKERS="1",
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run_env.pop("PMD_TEST_PAUSE_AT", None)
    proc = subprocess.run(PMD + [str(a) for a in args], cwd=cwd, env=run_env, stdin=subprocess.DEVNULL,
                          capture_output=True)
    return proc.returncode, proc.stderr.decode()
