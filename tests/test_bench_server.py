"""`callbot pipeline-bench --server-streams N`: streams per core from the CPU of every server process, workers included."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from callbot.app.cli import main


@pytest.mark.slow  # two server processes with their workers, and 24 streams
def test_server_streams_per_core_count_the_workers_cpu() -> None:
    # 24 streams (about 1 s of server CPU), not 4: four barge-in streams cost about 0.2 s, within the
    # variation of the idle start and stop it is compared with (one CI run measured 0.0 s)
    result = CliRunner().invoke(main, ["pipeline-bench", "--json", "--repeat", "1", "--server-streams", "24",
                                       "--server-workers", "2"])
    assert result.exit_code == 0, result.output
    server = json.loads(result.stdout)["server"]
    assert server["workers"] == 2 and server["speed"] == 0.0
    assert server["stt"] is False  # barge-in streams unless --server-stt
    assert server["audio_s"] == server["frames"] / 50
    # server_cpu_s is printed to 1 ms; the ratio is taken before that rounding, so it lies within its bounds.
    cpu = server["server_cpu_s"]
    assert (round(server["audio_s"] / (cpu + 0.0005)) <= server["streams_per_core_realtime"]
            <= round(server["audio_s"] / (cpu - 0.0005))), server
    # The supervisor does nothing per frame: a frame costs this much only if the workers' CPU is counted.
    assert server["us_per_frame"] > 20, server
    assert set(server["load_avg"]) == {"start", "end"} and server["cpu_count"] >= 1


def test_server_options_are_range_checked() -> None:
    result = CliRunner().invoke(main, ["pipeline-bench", "--server-streams", "2", "--server-workers", "0"])
    assert result.exit_code == 2 and "--server-workers" in result.output


def test_a_stream_the_server_did_not_take_whole_is_an_error_not_a_figure(tmp_path) -> None:
    """The figure divides the server's CPU by the audio it took: a stream cut short (an idle timeout while the
    load generator still opened others) would inflate it, so the run is refused and says why."""
    import click

    from callbot.audio_server.bench.server import _served_frames

    log = tmp_path / "server.log"

    def write(*records: dict) -> None:
        log.write_text("not json: a plain log line\n" + "".join(json.dumps(r) + "\n" for r in records))

    write({"msg": "stream closed", "t": 6.0}, {"msg": "stream closed", "t": 8.0})
    assert _served_frames(log, [400, 300]) == 700
    write({"msg": "stream failed", "code": "idle_timeout", "reason": "no audio for 0.5 s"},
          {"msg": "stream closed", "t": 0.0}, {"msg": "stream closed", "t": 8.0})
    with pytest.raises(click.ClickException, match=r"1 of 2 streams did not reach the server whole .*no audio for 0.5 s"):
        _served_frames(log, [300, 400])
    write({"msg": "stream closed", "t": 6.0})  # the other was never opened
    with pytest.raises(click.ClickException, match="1 of 2 streams"):
        _served_frames(log, [300, 300])
