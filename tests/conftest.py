"""Shared fixtures of the test suite, and the ``slow`` marker's inner-loop contract.

``pytest -m "not slow"`` is the fast inner loop: unit tests, sans-I/O cores, and servers over
loopback sockets that finish in a second or two. ``slow`` marks what takes more than about 3 s:
replays through simswitch and the robot, the real Whisper model, benches, end-to-end runs.
Modules mark their own slow tests (``@pytest.mark.slow`` or ``pytestmark``); SLOW_ELSEWHERE
below marks those of modules that do not mark themselves yet.
"""

from __future__ import annotations

import sys

import pytest

# module -> its slow tests ("*": all of them). Each owner may move these marks into the module.
SLOW_ELSEWHERE: dict[str, set[str]] = {
    "test_replay_amd.py": {"*"},  # replays every AMD fixture through simswitch, the audio server and the robot
    "test_replay_call_cli.py": {"*"},  # `callbot call` against simswitch and a real audio server
    "test_replay_faults.py": {"test_esl_drop_mid_call_reconnects_and_finishes_the_call",
                              "test_callee_hangs_up_during_the_esl_outage_and_the_call_is_recorded_cleanly",
                              "test_audio_server_unreachable_call_goes_on_without_barge_in_and_is_flagged",
                              "test_callee_hangs_up_in_the_middle_of_a_prompt"},
    "test_replay_lang.py": {"test_the_robot_sends_the_scenario_language",
                            "test_an_english_only_model_keeps_a_french_stream_without_transcripts_saying_how_to_fix_it",
                            "test_an_english_stream_is_transcribed"},  # the real Whisper model
    "test_bench.py": {"test_a_small_real_bench_scores_every_call", "test_bad_arguments_say_what_to_pass"},
    "test_simswitch_speed.py": {"*"},  # a call in real time against one at --speed 20
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        slow = SLOW_ELSEWHERE.get(item.path.name, set())
        if "*" in slow or getattr(item, "originalname", item.name) in slow:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def callbot_cli() -> list[str]:
    """The ``callbot`` console script of this venv, as a command line to run in a subprocess."""
    return [sys.executable, "-c", "from callbot.app.cli import main; main()"]


@pytest.fixture(scope="session")
def audio_port():
    """One in-process audio server (and Whisper model) for every replay of the run, with a replay's settings.

    Modules that want another server (without speech recognition, say) define their own ``audio_port``."""
    from callbot.app.replay import audio_server_thread, replay_settings
    from callbot.config import Settings

    with audio_server_thread(replay_settings(Settings())) as port:
        yield port
