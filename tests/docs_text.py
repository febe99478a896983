"""What the docs say, read the way a user reads them: the commands in their code blocks, the
settings, paths, modules and make targets they name. tests/test_docs.py holds each against the
code; the tutorial tests run the commands.

In a tutorial (docs/tutorials/), every ```bash block is a step the reader runs, and the test the
page names runs it as written, in order (``run_tutorial``); illustrations that are not run are
fenced ```shell. A step's trailing comment may say the exit status it ends with (``# exit 3``, ``# exit 0 or 3``);
otherwise it must exit 0. A step ending in ``&`` starts in the background and is stopped at the end."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}


def pages() -> list[Path]:
    """Every markdown page a user reads: the site's pages and the README."""
    return sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]


@dataclass(frozen=True)
class Command:
    page: Path
    line: int  # 1-based, in the page
    text: str  # one command, continuations joined, trailing comment dropped
    block: int  # the index of its code block in the page
    lang: str = ""  # the block's fence language
    comment: str = ""  # its trailing comment


def _blocks(text: str):
    """(language, first line number, lines) of each fenced code block."""
    lang, start, body = None, 0, []
    for no, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```(\w*)", line)
        if fence and lang is None:
            lang, start, body = fence[1], no + 1, []
        elif fence:
            yield lang, start, body
            lang = None
        elif lang is not None:
            body.append(line)


def strip_comment(line: str) -> str:
    """The command without its trailing ``# comment`` (a # inside quotes stays)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def commands(page: Path, program: str | None = None) -> list[Command]:
    """The shell commands of a page's code blocks (``$ `` prompts dropped, ``\\`` lines joined);
    with ``program``, only those that start with it."""
    out = []
    for index, (lang, start, body) in enumerate(_blocks(page.read_text(encoding="utf-8"))):
        if lang not in SHELL_LANGS:
            continue
        pending, first = "", 0
        for offset, raw in enumerate(body):
            line = raw.strip().removeprefix("$ ")
            if not pending:
                first = start + offset
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            whole = pending + line
            text = strip_comment(whole).strip()
            pending = ""
            if text and (program is None or text.split()[0] == program):
                out.append(Command(page, first, text, index, lang, whole[len(strip_comment(whole)) :].lstrip("# ")))
    return out


PLACEHOLDER = re.compile(r"\[|\]|\||\.\.\.|\b[A-Z][A-Z_]{2,}\b")


def is_synopsis(text: str) -> bool:
    """A usage line (``s2s promote VERSION [--force]``), not a command to run as written."""
    return bool(PLACEHOLDER.search(text))


def split(text: str) -> list[str]:
    """The words of one command, cut at the first ``|``, ``&&``, ``;``, ``>`` or ``&``."""
    words = []
    for word in shlex.split(text):
        if word in ("|", "&&", ";", "&", "||") or word.startswith(">"):
            break
        words.append(word)
    return words


@dataclass
class Ran:
    command: Command
    text: str  # as run (after substitutions)
    returncode: int
    stdout: str
    stderr: str


def tutorial_steps(name: str) -> list[Command]:
    """The steps of docs/tutorials/<name>: the commands of its ```bash blocks, in order."""
    return [c for c in commands(DOCS / "tutorials" / name) if c.lang == "bash"]


def code_block(name: str, lang: str, index: int = 0) -> str:
    """The text of the index-th ```<lang> block of docs/tutorials/<name> (a file the page has you write)."""
    found = [
        body for fence, _, body in _blocks((DOCS / "tutorials" / name).read_text(encoding="utf-8")) if fence == lang
    ]
    return "\n".join(found[index]) + "\n"


def run_tutorial(
    name: str, cwd: Path, env: dict | None = None, subs: dict | None = None, timeout: float = 900, checks=None
):
    """Run a tutorial's steps as a reader would, in a shell, from ``cwd``, with the project's
    venv first on PATH; ``subs`` replaces text in each step first (a free port for a fixed one).
    ``checks(ran)`` runs after the last step, while the background steps still run (a server's
    state). Each step must end with the exit status its comment says (0 unless ``# exit N``); a step
    ending in ``&`` runs in the background until the end (its ``Ran.stdout`` is the file its output
    goes to). Returns every step's ``Ran``."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **(env or {}), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    ran, background = [], []
    try:
        for step in tutorial_steps(name):
            text = step.text
            for old, new in (subs or {}).items():
                text = text.replace(old, new)
            where = f"docs/tutorials/{name}:{step.line}"
            if text.startswith("cd "):
                cwd = (cwd / text[3:].strip()).resolve()
                ran.append(Ran(step, text, 0, "", ""))
                continue
            if text.startswith("export "):
                for pair in shlex.split(text[len("export ") :]):
                    key, _, value = pair.partition("=")
                    env[key] = value
                ran.append(Ran(step, text, 0, "", ""))
                continue
            if text.endswith("&"):
                log_path = Path(tempfile.mkdtemp(prefix="tutorial-bg-")) / "output.log"
                log = log_path.open("w")  # closed when the process is stopped
                proc = subprocess.Popen(
                    ["bash", "-c", text[:-1]],
                    cwd=cwd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                background.append((proc, log))
                ran.append(Ran(step, text, 0, str(log_path), ""))  # stdout: where its output goes
                continue
            done = subprocess.run(
                ["bash", "-c", text], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
            )
            m = re.search(r"\bexit (\d+(?: or \d+)*)", step.comment)
            expected = {int(code) for code in m[1].split(" or ")} if m else {0}
            assert done.returncode in expected, (
                f"{where}: `{text}` exited {done.returncode}, the page says {' or '.join(map(str, sorted(expected)))}\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
            ran.append(Ran(step, text, done.returncode, done.stdout, done.stderr))
        if checks is not None:
            checks(ran)
    finally:
        for proc, log in background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            log.close()
    return ran
