"""The audio server's subcommands: ``audio-server``, ``stream`` (a mod_audio_stream-like client) and ``pipeline-bench``."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import click

from callbot.cli_context import CliContext
from callbot.config import ConfigError


@click.command("audio-server")
@click.option("--host", default=None, help="Bind address (default: audio_server.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: audio_server.port, 8080; 0 picks a free one).")
@click.option("--token", default=None, help="Require this token (?token= or Authorization header).")
@click.option("--max-streams", type=int, default=None, help="Concurrent streams allowed.")
@click.option("--idle-timeout", type=float, default=None, help="Seconds without audio before a stream is closed.")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus /metrics on this port (same host).")
@click.option("--model", default=None, help="CTranslate2 Whisper directory or model name (default: tiny.en, packaged).")
@click.option("--language", default=None, help="Transcription language (a non-English one needs a multilingual model).")
@click.option("--no-stt", is_flag=True, help="Barge-in, AMD and beep only: load no Whisper model.")
@click.option("--workers", type=int, default=None,
              help="Worker processes on the port, each with its own model (default: audio_server.workers, "
                   "else one per CPU).")
@click.option("--insecure-no-token", is_flag=True,
              help="Listen on a non-loopback address without a token (refused otherwise).")
@click.pass_obj
def audio_server(obj: CliContext, host: str | None, port: int | None, token: str | None,
                 max_streams: int | None, idle_timeout: float | None, metrics_port: int | None,
                 model: str | None, language: str | None, no_stt: bool, workers: int | None,
                 insecure_no_token: bool) -> None:
    """Serve mod_audio_stream WebSockets on ws://HOST:PORT/stream/<uuid> until SIGINT/SIGTERM.

    N worker processes share the port (SO_REUSEPORT) under a supervisor that restarts a dead one;
    /healthz (on the port) and /metrics (on --metrics-port, with /healthz) speak for all of them."""
    from callbot.audio_server.server import ListenError
    from callbot.audio_server.serve.supervisor import serve_workers

    settings = obj.settings(**{"audio_server.host": host, "audio_server.port": port,
                               "audio_server.token": token, "audio_server.max_streams": max_streams,
                               "audio_server.idle_timeout_s": idle_timeout,
                               "audio_server.metrics_port": metrics_port, "stt.model": model,
                               "stt.language": language, "stt.enabled": False if no_stt else None,
                               "audio_server.workers": workers,
                               "audio_server.insecure_no_token": True if insecure_no_token else None})
    try:
        serve_workers(settings, json_logs=obj.json_logs, verbose=obj.verbose)
    except (ConfigError, ListenError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("stream")
@click.argument("wav", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default="ws://127.0.0.1:8080", show_default=True, help="Audio server base URL.")
@click.option("--call", "call", default=None, help="Call uuid (default: a new one).")
@click.option("--chunking", type=click.Choice(["20ms", "random"]), default="20ms", show_default=True)
@click.option("--speed", type=float, default=1.0, show_default=True, help="× real time; 0 = as fast as possible.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random message sizes.")
@click.option("--min-speech-ms", type=int, default=None, help="Barge-in threshold for this stream.")
@click.option("--bridge-ms", type=int, default=None, help="Gaps bridged within one utterance.")
@click.option("--token", default=None, help="Sent as ?token=.")
@click.option("--replay", is_flag=True, help="Mark the stream replay=1: faster than real time, up to the server's "
                                             "audio_server.replay_max_speed (it checks the token).")
@click.option("--linger", type=float, default=2.0, show_default=True,
              help="Seconds to wait for events after the last audio.")
def stream(wav: Path, url: str, call: str | None, chunking: str, speed: float, seed: int,
           min_speech_ms: int | None, bridge_ms: int | None, token: str | None, replay: bool, linger: float) -> None:
    """Stream WAV (mono, or L = callee) as mod_audio_stream would; print each event as a JSON line."""
    from callbot.audio_server.stream_client import read_wav, stream_pcm
    from callbot.stream import StreamQuery, stream_url

    samples, rate = read_wav(wav)
    query = StreamQuery(rate=rate, min_speech_ms=min_speech_ms, bridge_ms=bridge_ms, token=token, replay=replay)
    try:
        target = stream_url(url, call or str(uuid.uuid4()), query)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    result = asyncio.run(stream_pcm(target, samples, rate, chunking=chunking, speed=speed, seed=seed,
                                    linger_s=linger, on_text=lambda text: print(text, flush=True)))
    if result.close_code is not None:
        click.echo(f"server closed the stream: {result.close_code} {result.close_reason}", err=True)


@click.command("pipeline-bench")
@click.option("--fixtures", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Directory of WAVs, all played (default: the bundled demo calls of 10 s or less).")
@click.option("--repeat", type=int, default=3, show_default=True, help="Passes over the fixtures.")
@click.option("--server-streams", type=int, default=0, show_default=True,
              help="Also stream this many fixtures at once through a real server process and report its CPU.")
@click.option("--server-workers", type=click.IntRange(1, 1024), default=None,
              help="That server's worker processes (default: audio_server.workers, else one per CPU).")
@click.option("--server-speed", type=click.FloatRange(0, 1000), default=0.0, show_default=True,
              help="× real time the streams are sent at (0: as fast as the server reads them).")
@click.option("--server-stt", is_flag=True,
              help="That server also transcribes every stream (default: barge-in streams, as --no-stt).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_obj
def pipeline_bench(obj: CliContext, fixtures: Path | None, repeat: int, server_streams: int,
                   server_workers: int | None, server_speed: float, server_stt: bool, as_json: bool) -> None:
    """CPU cost of the audio pipeline (and optionally the whole server): µs per frame, streams per core at real
    time. The server's figure is stream-seconds of audio / CPU-seconds of all its processes."""
    from callbot.audio_server.bench.pipeline import DEFAULT_FIXTURES, DEFAULT_MAX_S, fixture_wavs, run_bench
    from callbot.audio_server.bench.server import run_server_bench
    from callbot.audio_server.serve.supervisor import default_workers

    wavs = fixture_wavs(fixtures, None) if fixtures else fixture_wavs(DEFAULT_FIXTURES, DEFAULT_MAX_S)
    settings = obj.settings()
    report = run_bench(wavs, settings, repeat)
    if server_streams > 0:
        workers = server_workers or settings.audio_server.workers or default_workers()
        report["server"] = run_server_bench(wavs, server_streams, obj.config_path, workers, server_speed,
                                            server_stt)
    if as_json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
    else:
        for key, value in report.items():
            if key != "per_fixture":
                click.echo(f"{key}: {value}")


commands = [audio_server, stream, pipeline_bench]
