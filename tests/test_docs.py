"""The README and docs/ hold together: every page of docs/ is linked from the README, every
relative link and image points at a file that exists, every #anchor at a heading of its page (as
GitHub and GitLab make anchors from headings), and every documented ``train.py`` / ``analyze.py``
command composes with today's configs and passes the settings checks."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from analysis.settings import AnalysisSettings
from inpaint.checks import check_data, check_model

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's slugs of a page's headings (outside code blocks): lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+://", target)]


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.split("#")[0]).resolve() for target in links(ROOT / "README.md")}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert broken == []


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


SBATCH_SCRIPT = ROOT / "docs" / "train.sbatch"


def sbatch_train_line() -> list[str]:
    """The train.py arguments of docs/train.sbatch's ``srun [options] python train.py ... "$@"`` line, less its run folder."""
    words = next(shlex.split(line) for line in SBATCH_SCRIPT.read_text().splitlines() if line.startswith("srun "))
    start = words.index("train.py") + 1
    return [a for a in words[start:] if a != "$@" and not a.startswith("hydra.run.dir=")]


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(page, entry point, arguments) of every ``python train.py`` / ``python analyze.py`` line (``srun``
    before it allowed, ``\\`` continuations joined, comments dropped) in the bash blocks of the README and
    docs/, and of every ``sbatch [options] docs/train.sbatch ARGS`` line (the script's own train.py
    arguments, then ARGS, as the script passes them)."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                tokens = shlex.split(line, comments=True)
                tokens = tokens[1:] if tokens[:1] == ["srun"] else tokens
                if tokens[:1] == ["python"] and tokens[1:2] in (["train.py"], ["analyze.py"]):
                    found.append((page.name, tokens[1].removesuffix(".py"), tokens[2:]))
                if tokens[:1] == ["sbatch"] and "docs/train.sbatch" in tokens:
                    found.append((page.name, "train", [*sbatch_train_line(), *tokens[tokens.index("docs/train.sbatch") + 1 :]]))
    return found


def overrides_of(arguments: list[str]) -> list[str]:
    """The Hydra overrides of a command line: flags, ``--cfg job`` and placeholders such as
    ``<same overrides>`` dropped, ``<run>`` inside a value made a plain name, and each sweep
    (``a=1,2``) at its first value."""
    arguments = [a for a, before in zip(arguments, ["", *arguments[:-1]], strict=True) if before != "--cfg"]
    # as the shell passes them ($HOME expanded; bash leaves ~ after "key=" alone, and Hydra refuses it)
    words = [re.sub(r"<[^<>=\s]+>", "X", os.path.expandvars(a)) for a in arguments if "=" in a and not a.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(words)
    return [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else o.input_line
            for o in parsed]


COMMANDS = documented_commands()


def test_the_docs_show_commands_of_both_entry_points():
    assert {script for _, script, _ in COMMANDS} == {"train", "analyze"} and len(COMMANDS) > 30


@pytest.mark.parametrize(("page", "script", "arguments"), COMMANDS, ids=[f"{p}:{' '.join(a)[:60]}" for p, _, a in COMMANDS])
def test_every_documented_command_composes_and_passes_the_settings_checks(page, script, arguments):
    """Each command's overrides compose with today's configs (a renamed option or group fails here)
    and, for train.py, pass the checks train.py runs before any data is read (paths and devices are
    the reader's: a command is not run)."""
    check_command(script, overrides_of(arguments))


def check_command(script: str, overrides: list[str]) -> None:
    os.environ.setdefault("INPAINT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(script, overrides=[*overrides, "paths.output_dir=unused"], return_hydra_config=True)  # no run folder
    plain = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "data", "trainer", "analysis") if key in cfg}
    AnalysisSettings.from_config(plain["analysis"])
    if script == "train":
        check_model(plain["model"], cfg.image_size)
        check_data(plain["data"], training=True)


def test_a_broken_command_fails_the_check():
    with pytest.raises(Exception, match="analysis.jacobian_imgs|jacobian_imgs"):
        check_command("train", overrides_of(["experiment=smoke", "analysis.jacobian_imgs=4"]))
    with pytest.raises(Exception, match="mask"):
        check_command("train", overrides_of(["model=bias_free", "mask=center48"]))
