"""docs/scenarios.md stays true to the loader: every key it accepts is documented in its table's section, no
documented key is refused, the built-in intent phrases are the code's, and the page's examples load (or fail)
with the real loader exactly as the page says."""

from __future__ import annotations

import ast
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from callbot.resources import prompts_dir
from callbot.robot.scenario import loader
from callbot.robot.scenario.intents import DEFAULT_RULES, INTENTS, OPTIONAL_INTENTS, normalize
from callbot.robot.scenario.loader import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "scenarios.md"
LOADER = ROOT / "robot" / "scenario" / "loader.py"
TABLES = {"": "", "scenario": "[scenario]", "voicemail": "[voicemail]", "steps": "[steps.NAME]"}  # where -> heading


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of ``## <title>`` up to the next ``## `` heading (its ``###`` subsections included)."""
    text = doc()
    match = re.search(rf"^## {re.escape(title)}\s*$", text, re.M)
    assert match, f"docs/scenarios.md has no '## {title}' section"
    rest = text[match.end():]
    end = re.search(r"^## ", rest, re.M)
    return rest[:end.start()] if end else rest


def table_keys(text: str) -> set[str]:
    """The keys a reference table lists: the backticked first cell of each row."""
    return set(re.findall(r"^\| `([^`]+)` \|", text, re.M))


def toml_blocks(text: str) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", text, re.M | re.S)


def accepted_keys() -> dict[str, set[str]]:
    """Each table's accepted keys, read from the loader itself: the loader is made to refuse one unknown key
    per table, and its message lists the table's known keys."""
    probe = {"": "[bogus_top]\n", "scenario": "[scenario]\nbogus = 1\n", "voicemail": "[voicemail]\nbogus = 1\n",
             "steps": "[steps.s]\nbogus = 1\n"}
    known: dict[str, set[str]] = {}
    for where, text in probe.items():
        try:
            loader._build(tomllib.loads(text), Path("probe.toml"), 16000, prompts_dir(), 86400)
        except ScenarioError as exc:
            found = [p for p in exc.problems if "unknown key; known keys: " in p]
        else:
            found = []
        assert len(found) == 1, (where, found)
        known[where] = set(found[0].split("known keys: ", 1)[1].split(", "))
    return known


def test_the_probe_covers_every_table_the_loader_checks():
    """The loader's own key sets (the literal sets it passes to unknown_keys) are exactly the probed ones, so a
    new table or key cannot slip past this file."""
    literal_sets = []
    for node in ast.walk(ast.parse(LOADER.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "unknown_keys":
            literal_sets.append(frozenset(ast.literal_eval(node.args[1])))
    assert sorted(map(sorted, literal_sets)) == sorted(map(sorted, accepted_keys().values()))


def test_every_accepted_key_is_documented_in_its_table_and_no_other():
    known = accepted_keys()
    for table in known[""]:  # every top-level table has its section
        section("[steps.NAME]" if table == "steps" else f"[{table}]")
    for where, heading in TABLES.items():
        if not where:
            continue
        listed = table_keys(section(heading))
        assert listed == known[where], f"## {heading}: documents {sorted(listed)}, the loader accepts " \
                                       f"{sorted(known[where])}"


def test_outcomes_intents_and_choices_are_documented():
    steps, head, vm = section("[steps.NAME]"), section("[scenario]"), section("[voicemail]")
    for outcome in (*loader.OUTCOMES, *OPTIONAL_INTENTS, "default"):
        assert f"`{outcome}`" in steps, outcome
    for mode in loader.BARGE_IN_MODES:
        assert f"`{mode}`" in steps, mode
    for action in loader.AUDIO_LOST_ACTIONS:
        assert f"`{action}`" in head, action
    for action in (*loader.MACHINE_ACTIONS, *loader.NOTSURE_ACTIONS):
        assert f"`{action}`" in vm, action
    for language in DEFAULT_RULES:
        assert f"`{language}`" in head, language


def test_the_built_in_phrases_are_the_code_s():
    """The [intents] table lists, per intent and language, exactly the built-in phrases (normalised)."""
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \|(.*)$", section("[intents]"), re.M)}
    assert set(rows) == {*INTENTS, *OPTIONAL_INTENTS}
    languages = list(DEFAULT_RULES)
    for intent, rest in rows.items():
        cells = [c.strip() for c in rest.strip().strip("|").split("|")]
        assert len(cells) == len(languages), (intent, cells)
        for language, cell in zip(languages, cells):
            documented = re.findall(r"`([^`]+)`", cell)
            assert sorted(documented) == sorted(normalize(p) for p in DEFAULT_RULES[language][intent]), \
                (intent, language)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_the_minimal_example_loads_with_the_bundled_prompts(tmp_path, rate):
    blocks = toml_blocks(section("A minimal example"))
    assert blocks, "no ```toml block under '## A minimal example'"
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(block, encoding="utf-8")
        sc = load_scenario(path, rate=rate)  # the default [prompts] dir: the bundled prompts
        assert sc.start in sc.steps and sc.steps


def test_the_intents_fragment_loads_inside_the_minimal_example(tmp_path):
    minimal = toml_blocks(section("A minimal example"))[0]
    fragments = toml_blocks(section("[intents]"))
    assert fragments
    for fragment in fragments:
        path = tmp_path / "with_intents.toml"
        path.write_text(minimal + "\n" + fragment, encoding="utf-8")
        sc = load_scenario(path)
        for intent, phrases in tomllib.loads(fragment)["intents"].items():
            assert all(sc.intents.match(p) == intent for p in phrases), intent


def test_the_error_example_is_what_the_loader_prints(tmp_path, monkeypatch):
    """The 'Errors at load' example, run for real: same problems, same lines, same words."""
    text = section("Errors at load")
    (bad,) = toml_blocks(text)
    shown = re.search(r"is refused with:\n\n```\n(.*?)```", text, re.S)
    assert shown, "no output block after 'is refused with:'"
    prompts = tmp_path / "srv" / "prompts"
    (prompts / "en" / "16000").mkdir(parents=True)
    shutil.copy(prompts_dir() / "en" / "16000" / "greeting.wav", prompts / "en" / "16000" / "greeting.wav")
    monkeypatch.chdir(tmp_path)
    Path("bad.toml").write_text(bad, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario("bad.toml", prompts_dir=prompts)
    printed = str(info.value).replace(str(prompts.resolve()), "/srv/prompts")
    assert printed.strip() == shown.group(1).strip()


def test_the_page_points_at_nothing_outside_the_repository():
    for target in re.findall(r"\]\(([^)]+)\)", doc()):
        assert not re.match(r"[a-z]+://", target), target
        assert (DOC.parent / target.split("#")[0]).exists() if target.split("#")[0] else True, target
    for named in re.findall(r"`((?:docs|scripts|robot|tests)/[\w./-]+)`", doc()):
        assert (ROOT / named).exists(), named


def test_the_readme_links_the_page():
    assert "docs/scenarios.md" in (ROOT / "README.md").read_text(encoding="utf-8")
