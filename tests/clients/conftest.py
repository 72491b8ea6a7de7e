"""Fixtures: a real `sluice server` process on a free port with its own data dir."""

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SLUICE_BIN", ROOT / "target" / "debug" / "sluice"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A broker process that can be killed with -9 and started again on the same data."""

    def __init__(self, data_dir, port, extra_env=None):
        self.data_dir = Path(data_dir)
        self.port = port
        self.bootstrap = f"localhost:{port}"
        self.extra_env = extra_env or {}
        self.proc = None
        self.log_path = self.data_dir.parent / f"broker-{port}.log"

    def start(self):
        return self.launch().wait_listening()

    def launch(self):
        """Starts the process without waiting (a cluster node listens only once a
        quorum of its peers is up)."""
        env = dict(os.environ, SLUICE_LOG="info", **self.extra_env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BIN), "server", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        return self

    def wait_listening(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("broker did not start listening")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self):
        return self.proc.poll() is None

    def output(self):
        return self.log_path.read_text(errors="replace")

    def cli(self, *args, stdin=None, check=True):
        """Runs the sluice CLI against this broker."""
        r = subprocess.run(
            [str(BIN), *args, "--bootstrap", self.bootstrap],
            input=stdin, capture_output=True, text=True, timeout=120,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"sluice {' '.join(args)} failed: {r.stderr}")
        return r


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "data", free_port()).start()
    yield b
    b.stop()
    assert "panicked" not in b.output(), b.output()


@pytest.fixture
def make_broker(tmp_path):
    made = []

    def make(data_dir=None, **kw):
        b = Broker(data_dir or tmp_path / f"data{len(made)}", free_port(), **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()
