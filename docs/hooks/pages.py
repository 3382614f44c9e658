"""mkdocs hook: the pages that live outside ``docs/``, generated at build time.

- ``index.md`` and ``guide/<section>.md``: the README, its introduction and each ``##``
  section a page (so the README stays the one source);
- ``models/<card>.md``: every model card of the repository's ``models/`` folder, and
  ``models/index.md`` listing them by their registry names;
- ``developers.md``: DEVELOPERS.md.

Links between those files are rewritten to the pages they became (a link that has no page
stays as it is, and ``mkdocs build --strict`` reports it). TeX between ``$`` signs (the model
cards' formulas) becomes MathML at build time (latex2mathml), which browsers draw without
any script, so the site needs nothing from the network.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "docs/examples/quality_control.py": "tutorials/quality_control.md",
    "docs/examples/curation_with_classifier.py": "tutorials/curation.md",
}
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s#]+)(#[^)\s]*)?\)")
#: folders of docs/ that are not part of the site (mkdocs.yml's exclude_docs)
EXCLUDED = ("docs/hooks/", "docs/examples/")


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def readme_sections() -> list[tuple[str, str]]:
    """The README as (title, markdown) pairs: its introduction, then each ``##`` section
    (headings inside fenced code blocks are not sections)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    sections: list[tuple[str, list[str]]] = [("crowdbayes", [])]
    fenced = False
    for line in text.splitlines():
        if line.startswith("# ") and not sections[0][1] and len(sections) == 1:
            continue  # the README's title: the home page has its own
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            sections.append((line[3:].strip(), []))
            continue
        sections[-1][1].append(line)
    return [(title, "\n".join(lines).strip() + "\n") for title, lines in sections]


def _targets() -> dict[str, str]:
    """Repository path -> page, for every file that becomes a page."""
    out = {"docs/benchmarks.md": "benchmarks.md", "DEVELOPERS.md": "developers.md"}
    out["models/"] = out["models"] = "models/index.md"
    for card in sorted((ROOT / "models").glob("*.md")):
        out[f"models/{card.name}"] = f"models/{card.name}"
    out.update(EXAMPLES)
    return out


def rewrite_links(markdown: str, source: str, page: str) -> str:
    """Links of ``source`` (a repository path) rewritten for ``page`` (a site path): to
    the page a file became; to a file of the site as it is; a repository file that is
    no page (a script, a folder) becomes its path as code, so the site has no broken
    link. Other links (absolute, anchors, missing files) are left for mkdocs to check."""
    targets = _targets()
    base = posixpath.dirname(source)
    here = posixpath.dirname(page) or "."

    def one(m: re.Match[str]) -> str:
        bang, text, target, anchor = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        if re.match(r"^[a-z]+:", target) or target.startswith("/"):
            return m.group(0)
        repo_path = posixpath.normpath(posixpath.join(base, target))
        if target.endswith("/"):
            repo_path += "/"
        new = targets.get(repo_path)
        if new is None and repo_path.startswith("docs/") and not repo_path.startswith(EXCLUDED):
            if (ROOT / repo_path).is_file():
                new = repo_path.removeprefix("docs/")
        if new is not None:
            return f"{bang}[{text}]({posixpath.relpath(new, here)}{anchor})"
        if not bang and (ROOT / repo_path.rstrip("/")).exists():
            code = f"`{repo_path}`"
            return code if text.strip("`") == repo_path.rstrip("/") else f"{text} ({code})"
        return m.group(0)

    return _LINK.sub(one, markdown)


API = {
    "Estimators": "api/estimators.md",
    "Annotations and input": "api/data.md",
    "Quality control": "api/quality.md",
    "Model choice, NUTS, registry": "api/model_choice.md",
    "Simulation and datasets": "api/simulate.md",
}
TUTORIALS = {
    "Quality control of a labelling batch": "tutorials/quality_control.md",
    "Dataset curation with a classifier": "tutorials/curation.md",
}


def on_config(config: Any) -> Any:
    """The navigation, in the README's order (so that a new README section is a page)."""
    from crowdbayes.registry import MODELS

    cards = [{spec.estimator: f"models/{spec.card}"} for spec in MODELS.values()]
    config["nav"] = [
        {"Home": "index.md"},
        {"Guide": [{t: f"guide/{slug(t)}.md"} for t, _ in readme_sections()[1:]]},
        {"Tutorials": [{k: v} for k, v in TUTORIALS.items()]},
        {"Models": [{"All models": "models/index.md"}, *cards]},
        {"Benchmarks": "benchmarks.md"},
        *([{"More": more}] if (more := _other_pages()) else []),
        {"API reference": [{k: v} for k, v in API.items()]},
        {"Developers": "developers.md"},
    ]
    return config


def _other_pages() -> list[dict[str, str]]:
    """Every other page written in docs/ (e.g. a guide that is not a README section), by
    its first heading: a new page is in the navigation without an edit here."""
    known = {"benchmarks.md", *API.values(), *TUTORIALS.values()}
    docs = ROOT / "docs"
    out = []
    for path in sorted(docs.rglob("*.md")):
        rel = path.relative_to(docs).as_posix()
        if rel in known or f"docs/{rel}".startswith(EXCLUDED):
            continue
        heads = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("# ")]
        out.append({heads[0][2:].strip() if heads else path.stem: rel})
    return out


def _add(files: Files, config: Any, uri: str, content: str) -> None:
    files.append(File.generated(config, uri, content=content))


def on_files(files: Files, config: Any) -> Files:
    sections = readme_sections()
    intro_title, intro = sections[0]
    guide = [f"- [{t}](guide/{slug(t)}.md)" for t, _ in sections[1:]]
    index = rewrite_links(intro, "README.md", "index.md")
    index = f"# {intro_title}\n\n{index}\n## The guide\n\n" + "\n".join(guide) + "\n"
    _add(files, config, "index.md", index)
    for title, body in sections[1:]:
        page = f"guide/{slug(title)}.md"
        _add(files, config, page, f"# {title}\n\n" + rewrite_links(body, "README.md", page))
    rows = []
    from crowdbayes.registry import MODELS  # standard library only

    for name, spec in MODELS.items():
        rows.append(f"| `{name}` | [{spec.estimator}]({spec.card}) | {spec.line()} |")
    for card in sorted((ROOT / "models").glob("*.md")):
        page = f"models/{card.name}"
        text = card.read_text(encoding="utf-8")
        _add(files, config, page, rewrite_links(text, page, page))
    listing = (
        "# Model cards\n\nEvery model of the library by its command-line name "
        "(`crowdbayes aggregate --model NAME`), with its card: the generative story, "
        "when to use it, its priors, references and results.\n\n"
        "| name | estimator | what it is |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )
    _add(files, config, "models/index.md", listing)
    dev = (ROOT / "DEVELOPERS.md").read_text(encoding="utf-8")
    _add(files, config, "developers.md", rewrite_links(dev, "DEVELOPERS.md", "developers.md"))
    return files


_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.DOTALL)
_MATH = re.compile(
    r"\$\$(?P<block>.+?)\$\$|(?<![\\$\w])\$(?=\S)(?P<inline>[^$\n]+?)(?<=\S)\$(?![\w$])",
    re.DOTALL,
)


def math_to_mathml(markdown: str) -> str:
    """``$...$`` (inline) and ``$$...$$`` (display) outside code as MathML; a formula
    latex2mathml cannot read stays as it was."""
    from latex2mathml.converter import convert

    def one(m: re.Match[str]) -> str:
        block = m.group("block") is not None
        tex = m.group("block") if block else m.group("inline")
        try:
            mathml = convert(tex.strip(), display="block" if block else "inline")
        except Exception:  # any parse error: keep the TeX
            return m.group(0)
        # in a span: Markdown takes a line that starts with <math> for a block of HTML
        return mathml if block else f'<span class="math">{mathml}</span>'

    parts = _CODE.split(markdown)
    return "".join(p if i % 2 else _MATH.sub(one, p) for i, p in enumerate(parts))


def registered_estimators(markdown: str) -> str:
    """The estimators page with every registered estimator (``crowdbayes.registry``) that it
    does not name yet added at the end of its first list, so a new model has its API entry
    without an edit of the page."""
    from crowdbayes.registry import MODELS  # standard library only

    missing = [
        f"::: crowdbayes.{spec.module}.{spec.estimator}"
        for spec in MODELS.values()
        if not re.search(rf"^::: \S+\.{spec.estimator}$", markdown, re.M)
    ]
    if not missing:
        return markdown
    end = markdown.find("\n## ", markdown.index("\n::: "))  # the end of the first list
    at = len(markdown) if end < 0 else end
    return markdown[:at].rstrip("\n") + "".join(f"\n\n{m}" for m in missing) + "\n" + markdown[at:]


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """A page written in docs/ (``benchmarks.md``, ...) is served as it is, its links to the
    repository's other files rewritten like the generated pages'; the estimators page also
    gets every registered estimator it does not name (:func:`registered_estimators`). On
    every page, formulas become MathML."""
    uri = page.file.src_uri
    if (ROOT / "docs" / uri).is_file():
        markdown = rewrite_links(markdown, f"docs/{uri}", uri)
    if uri == API["Estimators"]:
        markdown = registered_estimators(markdown)
    return math_to_mathml(markdown)
