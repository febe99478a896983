"""`dvc plots show` and `dvc plots diff` render offline: the repository's .dvc/config names
.dvc/plots_template.html (plots.html_template, which DVC takes relative to .dvc/), a page with
vega, vega-lite and vega-embed inlined (bench/vendor_vega.sh). A tiny DVC repository with that
setting and one CSV plot is drawn by a real headless Chromium whose proxy leads nowhere; DVC's
default page (the scripts from a CDN) draws nothing there, which is what the check would catch.
`s2s init` gives a new project the same page and setting."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from browser import CHROMIUM, chromium, screenshot, shots_dir
from configobj import ConfigObj
from conftest import REPO, dvc_env, venv_bin

pytestmark = pytest.mark.system
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium package is not installed (make system-deps)"
)
REMOTE_SCRIPT = re.compile(r"<script[^>]*\ssrc\s*=\s*[\"']?(https?:)?//", re.I)
# vega-embed wraps the chart in div.vega-embed; vega draws its marks on a canvas (or an svg)
CHART = re.compile(r'class="vega-embed[^"]*".*?<(canvas|svg)[^>]*class="marks"', re.S)


def run(root: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {**dvc_env(), "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def offline_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after headless Chromium ran its scripts with no way out to the network
    (every request goes to a proxy on the discard port of 127.0.0.1)."""
    return chromium(page.as_uri(), profile, "--dump-dom", offline=True, budget_ms=5000).stdout


def plots_template_setting() -> str:
    """plots.html_template of the repository's .dvc/config."""
    return ConfigObj(str(REPO / ".dvc" / "config"))["plots"]["html_template"]


@pytest.fixture
def tiny_repo(tmp_path) -> Path:
    """git + DVC, one CSV declared as a plot (top-level `plots:` of dvc.yaml, no stage), committed,
    and the repository's plots.html_template setting with its page."""
    root = tmp_path / "repo"
    root.mkdir()
    run(root, "git", "init", "-q")
    run(root, venv_bin("dvc"), "init", "-q")
    setting = plots_template_setting()
    shutil.copyfile(REPO / ".dvc" / setting, root / ".dvc" / setting)  # DVC reads it relative to .dvc/
    run(root, venv_bin("dvc"), "config", "plots.html_template", setting)
    (root / "loss.csv").write_text("step,loss\n0,2.5\n1,1.9\n2,1.4\n3,1.2\n", encoding="utf-8")
    (root / "dvc.yaml").write_text("plots:\n  - loss.csv:\n      x: step\n      y: loss\n", encoding="utf-8")
    run(root, "git", "add", "-A")
    run(root, "git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "plots")
    return root


def test_the_repository_names_the_offline_page_relative_to_dvc_dir():
    setting = plots_template_setting()
    assert not os.path.isabs(setting)
    page = (REPO / ".dvc" / setting).read_text(encoding="utf-8")
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page  # {scripts} would add the CDN tags
    assert not REMOTE_SCRIPT.search(page) and page.count("<script>") == 3
    assert "BSD-3-Clause" in page and "University of Washington Interactive Data Lab" in page


@needs_chromium
def test_plots_show_and_diff_draw_the_chart_offline(tiny_repo, tmp_path):
    run(tiny_repo, venv_bin("dvc"), "plots", "show", "-o", "shown")
    (tiny_repo / "loss.csv").write_text("step,loss\n0,2.4\n1,1.7\n2,1.1\n3,0.9\n", encoding="utf-8")
    run(tiny_repo, venv_bin("dvc"), "plots", "diff", "-o", "diffed")  # HEAD vs the workspace
    for out in ("shown", "diffed"):
        page = tiny_repo / out / "index.html"
        html = page.read_text(encoding="utf-8")
        assert "vegaEmbed(" in html and not REMOTE_SCRIPT.search(html), f"{out}: not the offline page"
        dom = offline_dom(page, tmp_path / f"chromium-{out}")
        assert CHART.search(dom), f"{out}: no chart drawn offline:\n{dom[-1500:]}"

    if shots := shots_dir():  # the docs' picture: the repository's own plots (the README's run), offline
        run(REPO, venv_bin("dvc"), "plots", "show", "-o", str(tmp_path / "repo-plots"))
        page = (tmp_path / "repo-plots" / "index.html").as_uri()
        screenshot(page, shots / "dvc-plots.png", tmp_path / "chromium-shot", window="1280,1400", offline=True)

    # the control: DVC's default page, the same chart and the same blocked network, draws nothing
    run(tiny_repo, venv_bin("dvc"), "config", "--unset", "plots.html_template")
    run(tiny_repo, venv_bin("dvc"), "plots", "show", "-o", "default")
    page = tiny_repo / "default" / "index.html"
    assert REMOTE_SCRIPT.search(page.read_text(encoding="utf-8"))
    dom = offline_dom(page, tmp_path / "chromium-default")
    assert "</body>" in dom and not CHART.search(dom), "DVC's default page drew a chart with no network"


def test_init_gives_a_new_project_the_offline_page(tmp_path):
    from tasks.core import project

    root = project.init(tmp_path / "new")
    setting = ConfigObj(str(root / ".dvc" / "config"))["plots"]["html_template"]
    assert setting == plots_template_setting()
    assert (root / ".dvc" / setting).read_bytes() == (REPO / ".dvc" / setting).read_bytes()
