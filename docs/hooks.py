"""MkDocs hook: the pages generated at build time, so the site cannot drift from the code.

- reference/*.md from the schema, the parser and the exit-code table (flows/reference.py);
- index.md from README.md (one text for both), its links into docs/ made site-relative and its
  links to files outside the site turned into plain text.
"""

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]


def home_page() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")

    def link(m: re.Match) -> str:
        label, target = m[1], m[2]
        if target.startswith(("http://", "https://", "#")):
            return m[0]
        if target.startswith("docs/"):
            return f"[{label}]({target.removeprefix('docs/')})"
        return label

    return re.sub(r"(?<!!)\[([^\]]+)\]\(([^)]+)\)", link, text).replace("](docs/img/", "](img/")


def on_files(files, config):
    from flows import reference

    for name, text in reference.pages().items():
        files.append(File.generated(config, f"reference/{name}", content=text))
    files.append(File.generated(config, "index.md", content=home_page()))
    return files
