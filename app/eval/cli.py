"""The ``eval`` subcommand: barge-in quality of webrtcvad alone and of the cascade, side by side, on labelled fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import click

from callbot.cli_context import CliContext


@click.command("eval")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
@click.option("--png", "png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw false barge-ins by category and recall by version to this PNG.")
@click.option("--versions", default="clean,hiss,quiet", show_default=True,
              help="Versions of each fixture to run: clean, hiss (-42 dBFS white noise), quiet (-15 dB).")
@click.option("--systems", default="webrtcvad,cascade", show_default=True,
              help="webrtcvad: the gate alone (no classifier, no echo reference); cascade: gate + Silero "
                   "confirmation + echo gate.")
@click.option("--prompts", "prompts", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Where the sidecars' playback files are (default: the bundled prompts).")
@click.option("--cost", "cost", default=None, metavar="FIXTURE",
              help="Instead: CPU per stream and 20 ms frame with --streams copies of DIRECTORY's FIXTURE (a name, "
                   "e.g. doubletalk_05_greeting_10db_50ms) sharing one Silero batcher: webrtcvad alone, the "
                   "cascade, and the cascade with the echo reference (its playback markers).")
@click.option("--streams", default=32, show_default=True, type=click.IntRange(1, 2000),
              help="With --cost: how many streams run side by side.")
@click.pass_obj
def eval_command(obj: CliContext, directory: Path, as_json: bool, png: Path | None, versions: str, systems: str,
                 prompts: Path | None, cost: str | None, streams: int) -> None:
    """Stream every fixture of DIRECTORY (NAME.wav|flac + NAME.json with `category`, `speech`,
    `expect.barge_in`, optional `playback`) through the audio pipeline, once per system and version;
    print barge-in precision, recall on speech of at least 1.7 s, onset error p50/p95, false
    barge-ins by category and CPU per 20 ms frame. With --cost FIXTURE, the pipeline's cost per
    stream instead (webrtcvad, cascade, cascade + echo reference).
    """
    from callbot.app.eval.fixtures import VERSIONS, load
    from callbot.app.eval.run import SYSTEMS, run_one, summarise
    from callbot.resources import prompts_dir

    chosen_versions = tuple(v.strip() for v in versions.split(",") if v.strip())
    chosen_systems = [s.strip() for s in systems.split(",") if s.strip()]
    for v in chosen_versions:
        if v not in VERSIONS:
            raise click.BadParameter(f"{v!r}: use {', '.join(VERSIONS)}", param_hint="--versions")
    for s in chosen_systems:
        if s not in SYSTEMS:
            raise click.BadParameter(f"{s!r}: use {', '.join(SYSTEMS)}", param_hint="--systems")
    try:
        fixtures = load(directory, chosen_versions)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    settings = obj.settings()
    folder = prompts or prompts_dir()
    if cost is not None:
        _print_cost(directory, cost, chosen_versions, streams, settings, folder, as_json)
        return
    report = {"directory": str(directory), "fixtures": len(fixtures) // max(1, len(chosen_versions)),
              "versions": list(chosen_versions), "systems": {}}
    for system in chosen_systems:
        outcomes = [run_one(f, system, settings, folder) for f in fixtures]
        report["systems"][system] = summarise(outcomes)
    if png is not None:
        from callbot.app.eval.chart import draw

        draw(report, png)
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        click.echo(format_table(report))


def _print_cost(directory: Path, name: str, versions: tuple[str, ...], streams: int, settings: object, folder: Path,
                as_json: bool) -> None:
    from callbot.app.eval.cost import cost_report
    from callbot.app.eval.fixtures import load

    try:
        chosen = [f for f in load(directory, versions[:1]) if f.name == name]
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if not chosen:
        raise click.BadParameter(f"{name!r}: no such fixture in {directory}", param_hint="--cost")
    report = cost_report(chosen[0], streams, settings, folder)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    click.echo(f'{report["fixture"]} ({report["category"]}, {report["seconds"]} s) x {streams} streams, one shared '
               "Silero batcher, process CPU")
    for row in report["systems"]:
        extra = (f'  Silero: {row["silero_windows"]} windows in {row["silero_calls"]} calls'
                 if "silero_calls" in row else "")
        click.echo(f'{row["system"]:<14}{row["us_per_frame"]:>8} us per stream-frame  '
                   f'{row["streams_per_core"]:>6} streams per core{extra}')


def format_table(report: dict) -> str:
    systems = report["systems"]
    names = list(systems)
    cats = sorted({c for s in systems.values() for c in s["false_by_category"]})
    rows = [("barge-ins", lambda s: s["barge_ins"]), ("precision", lambda s: s["precision"]),
            ("recall, speech >= 1.7 s", lambda s: f'{s["recall"]} ({s["recall_detected"]}/{s["recall_expected"]})')]
    for version in report["versions"]:
        rows.append((f"  recall {version}", lambda s, v=version: s["recall_by_version"].get(v, {}).get("recall")))
    rows += [("onset error p50 (ms)", lambda s: s["onset_error_ms"]["p50"]),
             ("onset error p95 (ms)", lambda s: s["onset_error_ms"]["p95"]),
             ("speech_started after onset p50 (ms)", lambda s: s["speech_started_after_ms"]["p50"]),
             ("speech_started after onset p95 (ms)", lambda s: s["speech_started_after_ms"]["p95"])]
    for cat in cats:
        rows.append((f"false on {cat} ({_count(systems, cat)})", lambda s, c=cat: s["false_by_category"].get(c, 0)))
    rows.append(("CPU per 20 ms frame (us)", lambda s: s["us_per_frame"]))
    width = max(len(label) for label, _ in rows) + 2
    lines = [f'{report["fixtures"]} fixtures x {len(report["versions"])} versions ({", ".join(report["versions"])})',
             "".ljust(width) + "".join(n.rjust(18) for n in names)]
    for label, get in rows:
        lines.append(label.ljust(width) + "".join(str(get(systems[n])).rjust(18) for n in names))
    for n in names:
        if systems[n]["missed"]:
            lines.append(f'{n} missed: {", ".join(systems[n]["missed"])}')
        if systems[n]["false"]:
            lines.append(f'{n} false: {", ".join(systems[n]["false"])}')
    return "\n".join(lines)


def _count(systems: dict, category: str) -> int:
    return next(iter(systems.values()))["categories"][category]["fixtures"]


commands = [eval_command]
