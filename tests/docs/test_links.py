"""Every relative link in the repository's Markdown resolves.

For each Markdown file of the repository (README.md, SECURITY.md, docs/,
deploy/, tests/emulator/, ...; not target/, .venv/ or .git/), every link
that is not a URL (`[text](path)`, `![alt](path)`, `[label]: path`,
`<a href="path">`) must name a file or directory that exists inside the
repository, and its `#anchor`, where the target is Markdown, must be one of
the target's headings as GitHub names them (or an explicit `id`/`name`).
Links inside code (fenced blocks, `code spans`) are not links.

Run: python -m unittest discover -s tests/docs -p 'test_*.py'
Standard library only.
"""

import os
import re
import tempfile
import unittest
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]

# Directories that are not the repository's own documentation.
SKIP_DIRS = {".git", ".venv", "target", "node_modules", "__pycache__"}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# [text](dest "title") and ![alt](dest); the text may hold one level of
# brackets and span lines.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^\s()]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)"
)
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)", re.M)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<[a-z]+\b[^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def markdown_files(root=ROOT):
    """Every .md file under root, outside SKIP_DIRS, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name.lower().endswith(".md"):
                found.append(Path(dirpath, name))
    return found


def prose(text):
    """The text with fenced code blocks and code spans blanked out.

    Blanked, not removed: offsets (and so line numbers) stay as they were.
    """
    out = []
    fence = None
    for line in text.splitlines(keepends=True):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            out.append(_blank(line))
        elif fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):].strip():
                fence = None
            out.append(_blank(line))
        else:
            out.append(line)
    text = "".join(out)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", lambda m: _blank(m.group(0)), text, flags=re.S)


def _blank(s):
    return re.sub(r"[^\n]", " ", s)


def slug(heading):
    """The anchor GitHub gives a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text):
    """Every anchor a Markdown text defines: heading slugs (numbered -1, -2,
    ... when repeated, as GitHub does) and explicit HTML ids and names."""
    seen = {}
    found = set()

    def add(heading):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")

    lines = prose(text).splitlines()
    raw = text.splitlines()
    for i, line in enumerate(lines):
        m = ATX_HEADING.match(line)
        if m and raw[i].lstrip().startswith("#"):
            add(raw[i].strip().lstrip("#").strip().rstrip("#").strip())
        elif (
            i > 0
            and SETEXT_UNDERLINE.match(line)
            and lines[i - 1].strip()
            and not ATX_HEADING.match(lines[i - 1])
            and not lines[i - 1].lstrip().startswith(("|", "-", "*", ">"))
        ):
            add(raw[i - 1].strip())
    found.update(HTML_ANCHOR.findall(text))
    return found


def links(text):
    """(line number, destination) of every link outside code."""
    body = prose(text)
    found = []
    for pattern in (INLINE_LINK, REFERENCE_DEF, HTML_LINK):
        for m in pattern.finditer(body):
            dest = m.group(1)
            if dest.startswith("<") and dest.endswith(">"):
                dest = dest[1:-1]
            found.append((m.start(1), body.count("\n", 0, m.start(1)) + 1, dest))
    return [(line, dest) for _, line, dest in sorted(found)]


def broken_links(files, root=ROOT):
    """One message per link that does not resolve, as 'file:line: dest: why'."""
    root = Path(root).resolve()
    cache = {}

    def anchors_of(path):
        if path not in cache:
            cache[path] = anchors(path.read_text(encoding="utf-8"))
        return cache[path]

    problems = []
    for source in files:
        source = Path(source).resolve()
        rel_source = source.relative_to(root)
        for line, dest in links(source.read_text(encoding="utf-8")):
            where = f"{rel_source}:{line}: {dest}"
            if SCHEME.match(dest) or dest.startswith("//"):
                continue  # a URL: not checked here (no network in tests)
            path_part, _, anchor = dest.partition("#")
            path_part = unquote(path_part.split("?", 1)[0])
            if not path_part:
                target = source
            elif path_part.startswith("/"):
                target = (root / path_part.lstrip("/")).resolve()
            else:
                target = (source.parent / path_part).resolve()
            try:
                target.relative_to(root)
            except ValueError:
                problems.append(f"{where}: points outside the repository")
                continue
            if not target.exists():
                problems.append(f"{where}: no such file or directory")
                continue
            if anchor and target.is_file() and target.suffix.lower() == ".md":
                if unquote(anchor).lower() not in {a.lower() for a in anchors_of(target)}:
                    problems.append(f"{where}: no heading with that anchor in {target.relative_to(root)}")
    return problems


class RepositoryLinks(unittest.TestCase):
    def test_the_documentation_is_found(self):
        names = {str(p.relative_to(ROOT)) for p in markdown_files()}
        for expected in ("README.md", "SECURITY.md", "deploy/README.md", "docs/rotation.md"):
            self.assertIn(expected, names)

    def test_every_relative_link_resolves(self):
        problems = broken_links(markdown_files())
        self.assertEqual(problems, [], "broken links:\n" + "\n".join(problems))


class Checker(unittest.TestCase):
    """The checker itself, on small made-up trees: it must catch what it is for."""

    def tree(self, files):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        for name, text in files.items():
            p = Path(d.name, name)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        return Path(d.name)

    def check(self, files):
        root = self.tree(files)
        return broken_links(markdown_files(root), root)

    def test_slugs_are_githubs(self):
        self.assertEqual(slug("Permissions, proven"), "permissions-proven")
        self.assertEqual(slug("`rekey scan --format json`"), "rekey-scan---format-json")
        self.assertEqual(slug("Where the data comes from, and what it costs"),
                         "where-the-data-comes-from-and-what-it-costs")
        self.assertEqual(slug("Who uses a key (CloudTrail)"), "who-uses-a-key-cloudtrail")
        self.assertEqual(slug("The [owners](x.md) file"), "the-owners-file")

    def test_repeated_headings_are_numbered(self):
        self.assertLessEqual({"notes", "notes-1", "notes-2"}, anchors("# Notes\n\n## Notes\n\n## Notes\n"))

    def test_good_links_pass(self):
        self.assertEqual(self.check({
            "README.md": "See [a](docs/a.md#second-part), [dir](docs/), [here](#top) and\n"
                         "[split\nacross lines](docs/a.md) and [web](https://example.com/x#y).\n\n# Top\n",
            "docs/a.md": "# A\n\n## Second part\n\n[back](../README.md#top) [self](#a)\n",
        }), [])

    def test_a_missing_file_fails(self):
        problems = self.check({"README.md": "[gone](docs/gone.md)\n"})
        self.assertEqual(len(problems), 1)
        self.assertIn("README.md:1: docs/gone.md: no such file", problems[0])

    def test_a_missing_anchor_fails(self):
        problems = self.check({
            "README.md": "# Title\n\n[x](docs/a.md#nowhere) [y](#title) [z](#untitled)\n",
            "docs/a.md": "# A\n",
        })
        self.assertEqual(len(problems), 2, problems)
        self.assertIn("docs/a.md#nowhere", problems[0])
        self.assertIn("#untitled", problems[1])

    def test_a_path_outside_the_repository_fails(self):
        problems = self.check({"docs/a.md": "[shared](../../shared/notes.md)\n"})
        self.assertEqual(len(problems), 1)
        self.assertIn("outside the repository", problems[0])

    def test_reference_and_html_links_are_checked(self):
        problems = self.check({"README.md": '[x][1]\n\n[1]: gone.md\n\n<a href="also-gone.md">y</a>\n'})
        self.assertEqual(len(problems), 2, problems)

    def test_code_is_not_a_link_and_not_a_heading(self):
        problems = self.check({"README.md": (
            "`[x](gone.md)`\n\n```sh\n# not a heading\necho '[y](gone.md)'\n```\n\n"
            "[z](#not-a-heading)\n"
        )})
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("#not-a-heading", problems[0])


if __name__ == "__main__":
    unittest.main()
