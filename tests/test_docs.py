"""The README and docs/ hold together: every page of docs/ is linked from the README, every
relative link and image points at a file that exists, every #anchor at a heading of its page (as
GitHub and GitLab make anchors from headings), every documented ``train.py`` / ``analyze.py``
command composes with today's configs and passes the settings checks, and the commands of the
blocks marked runnable (``<!-- runnable -->`` before the block) run, at the smoke experiment's size.

In a runnable block a command whose comment says ``# needs ...`` (CelebA, a GPU, a cluster, a
browser, a killed run) is skipped with that reason; every other one is run as a subprocess, as the
reader would run it, with the smoke sizes (the leaves of ``conf/experiment/smoke.yaml`` that the
command's config has) and a log folder of the test's appended, placeholders made real: an image
folder for ``/path/to/images`` and ``$HOME/photos``, the runs the block's earlier commands made for
``logs/<task>/runs/<run>``, ``A``, ``B`` and ``logs/<task>/multiruns/<sweep>``. A line that an
end-to-end test runs itself (:data:`RUN_ELSEWHERE`, through ``documented.documented``) is run
there, once, with that test's checks on what it leaves."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from documented import PAGES, at_smoke_size, overrides_of, runnable_commands
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from analysis.settings import AnalysisSettings
from inpaint.checks import check_data, check_model

ROOT = Path(__file__).resolve().parents[1]
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


RUN_FOLDER = re.compile(r"logs/[\w<>]+/runs/([\w<>]+)")
SWEEP_FOLDER = re.compile(r"logs/[\w<>]+/multiruns/<sweep>")
RUNNABLE_COMMANDS = runnable_commands()
# documented lines an end-to-end test runs itself (documented(LINE)), with its checks on the output
RUN_ELSEWHERE = {
    "python train.py data=folder data.root=/path/to/images": "tests/test_folder.py",
    "python train.py -m mask=center64,center16": "tests/test_analyze.py",
    "python analyze.py ckpt_path=logs/demo/runs/<run>/checkpoints/last.ckpt": "tests/test_folder.py",
    "python analyze.py replot=logs/demo/runs/<run>": "tests/test_analyze.py",
    "python analyze.py 'compare=[logs/demo/runs/A,logs/demo/runs/B]'": "tests/test_analyze.py",
    "python train.py model=unet mask=freeform": "tests/test_any_hole.py",
}


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """The reader's machine: a home ($HOME in the commands; photographs in it on demand) and a log
    folder the commands share."""
    home = tmp_path_factory.mktemp("home")
    return {"home": home, "logs": home / "logs"}


def made_real(line: str, reader: dict) -> str:
    """The command with its placeholders pointing at the reader's folder and at what the commands
    before it made: ``<run>``, a training run (with checkpoints); ``A`` and ``B``, the first two
    analysed runs (a training run, analyze.py's own); ``<sweep>``, the newest sweep."""
    def by_age(files) -> list[Path]:
        return sorted((p.parents[1] for p in files), key=lambda p: p.stat().st_mtime)

    found = {"<run>": by_age(reader["logs"].glob("*/*runs/**/checkpoints/last.ckpt")),
             "A": by_age(reader["logs"].glob("*/*runs/**/analysis/summary.json"))}
    found["B"] = found["A"][1:]

    def run_folder(match: re.Match) -> str:
        assert found[match.group(1)], f"no run made yet for {match.group(0)}: runnable blocks run in order"
        return str(found[match.group(1)][0])

    if ("/path/to/images" in line or "$HOME/photos" in line) and not (reader["home"] / "photos").exists():
        from folder_tree import write_photographs

        write_photographs(reader["home"] / "photos", 48)
    line = line.replace("/path/to/images", str(reader["home"] / "photos"))
    line = RUN_FOLDER.sub(run_folder, line)
    return SWEEP_FOLDER.sub(lambda _: str(max(reader["logs"].glob("*/multiruns/*"))), line)


@pytest.mark.parametrize(("page", "line", "needs"), RUNNABLE_COMMANDS, ids=[f"{p}:{c[:70]}" for p, c, _ in RUNNABLE_COMMANDS])
def test_runnable_documented_commands_run_at_smoke_size(page, line, needs, reader):
    if needs:
        pytest.skip(f"needs {needs}")
    if line in RUN_ELSEWHERE:
        pytest.skip(f"run by {RUN_ELSEWHERE[line]}")
    line = made_real(line, reader)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    words = shlex.split(os.path.expandvars(line.replace("$HOME", str(reader["home"]))), comments=True)
    script = words[1].removesuffix(".py")
    extra = [] if "--cfg" in words else [*at_smoke_size(script, words[2:]), f"paths.log_dir={reader['logs']}"]
    done = subprocess.run([sys.executable, *words[1:], *extra], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{page}: {line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("line", RUN_ELSEWHERE)
def test_lines_run_elsewhere_are_documented_and_run_there(line):
    assert line in [command for _, command, _ in RUNNABLE_COMMANDS]
    assert f'documented("{line}"' in (ROOT / RUN_ELSEWHERE[line]).read_text()


def test_the_readme_s_workflows_run():
    """The README's workflows block is runnable, and runs a training, a sweep, an analysis and a comparison."""
    readme = [line for page, line, needs in RUNNABLE_COMMANDS if page == "README.md" and not needs]
    assert any(" -m " in line for line in readme) and any("compare=" in line for line in readme)
    assert any("ckpt_path=" in line for line in readme if "analyze.py" in line) and len(readme) >= 5


def test_a_broken_command_fails_the_check():
    with pytest.raises(Exception, match="analysis.jacobian_imgs|jacobian_imgs"):
        check_command("train", overrides_of(["experiment=smoke", "analysis.jacobian_imgs=4"]))
    with pytest.raises(Exception, match="mask"):
        check_command("train", overrides_of(["model=bias_free", "mask=center48"]))
