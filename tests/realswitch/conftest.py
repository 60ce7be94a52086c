"""The real-FreeSWITCH suite (marker ``realswitch``): a FreeSWITCH 1.10.12 with mod_audio_stream
built by scripts/install_freeswitch.sh, started on loopback for the session.

The switch is found in $CALLBOT_FREESWITCH_PREFIX, else where `scripts/install_freeswitch.sh
--print-prefix` says (keyed by ../shared/realswitch/'s archive when it is beside the clone). When
none is built, every test here skips and says why. .ci/realswitch.sh builds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from realswitch_kit import (
    EventRecorder, find_prefix, prepare_switch, start_audio_server, stop_process,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realswitch: needs a real FreeSWITCH built by scripts/install_freeswitch.sh (skips without one)")


@pytest.fixture(scope="session")
def fs_prefix() -> Path:
    prefix, reason = find_prefix()
    if prefix is None:
        pytest.skip(reason)
    if not os.access(prefix / "conf", os.W_OK):
        pytest.skip(f"{prefix}/conf is not writable by this user: the suite lays down freeswitch_conf/ there")
    return prefix


@pytest.fixture(scope="session")
def switch(fs_prefix: Path):
    """FreeSWITCH running from the prefix with the repository's configuration and fresh passwords."""
    sw = prepare_switch(fs_prefix)
    started = sw.ctl("start", check=False)
    if started.returncode != 0:
        pytest.fail(f"freeswitch_ctl.sh start failed:\n{started.stderr}\n{sw.log_tail()}")
    yield sw
    stopped = sw.ctl("stop", check=False)
    print(stopped.stderr)


@pytest.fixture(scope="session")
def recorder(switch):
    rec = EventRecorder(switch)
    yield rec
    rec.close()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("realswitch")


@pytest.fixture(scope="session")
def audio_server(switch, workdir):
    """`callbot audio-server` with speech recognition (the packaged tiny.en), on a free port."""
    server = start_audio_server(workdir, stt=True)
    yield server
    stop_process(server.proc)
