"""Every citation can be followed with the repository alone: nothing cites a document outside it (the
papers, the reference code and the pages of docs/ are what comments cite, docs/DESIGN.md), and every
``docs/<page>.md#anchor`` and Markdown link names a page and a heading that exist."""
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "\u00a7"
# citations of documents that are not in the repository (the specification files the project started from)
OUTSIDE = [
    re.compile(r"\bspec\s+(?:(?:mdc|yoco)\s+)?" + SECTION, re.I),  # the word spec, a section sign
    re.compile(r"\bspec\s+(?:mdc|yoco)\b", re.I),                   # the word spec, then mdc or yoco
    re.compile(r"shared[/\\]spec"),                                 # the folder of the spec files
    re.compile(r"\.\.[/\\]shared\b"),                               # the folder beside the repository
    re.compile(SECTION + r"\s*\d"),                                 # a bare section number: of which document?
]
# a test asserting that a text does NOT contain such a citation
PLAIN_LINK = re.compile(r"(?<![\w./-])docs/(?P<page>[\w./-]+?\.md)(?P<anchors>#[\w-]+(?:, #[\w-]+)*)?")
MD_LINK = re.compile(r"\]\((?P<target>[^()\s#]*)(?:#(?P<anchor>[^()\s]*))?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def repo_files():
    """Tracked files and new ones git does not ignore (paths relative to the repository)."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        return sorted(set(out.split("\n")) - {""})
    except (OSError, subprocess.CalledProcessError):  # no git: walk the tree
        found = []
        for d, dirs, files in os.walk(ROOT):
            dirs[:] = [x for x in dirs if not x.startswith(".")]
            found += [os.path.relpath(os.path.join(d, f), ROOT) for f in files]
        return sorted(found)


def read_text(path):
    """The file's text, or None for binary files."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    if b"\0" in raw[:8192]:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def outside_citations(text):
    """[(line number, cited text)] of every citation of a document outside the repository."""
    found = []
    for pat in OUTSIDE:
        for m in pat.finditer(text):
            line_start = text.rfind("\n", 0, m.start()) + 1
            line_end = text.find("\n", m.end())
            line = text[line_start:line_end if line_end >= 0 else len(text)]
            found.append((text.count("\n", 0, m.start()) + 1, line.strip()))
    return sorted(set(found))


def slug(heading):
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().strip("#").strip())
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text):
    """Every heading anchor of a Markdown text (repeated headings get -1, -2, … as on GitHub)."""
    out, seen, fenced = set(), {}, False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced or not re.match(r"#{1,6}\s", line):
            continue
        s = slug(line)
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


_ANCHOR_CACHE = {}


def page_anchors(path):
    if path not in _ANCHOR_CACHE:
        text = read_text(path)
        _ANCHOR_CACHE[path] = None if text is None else anchors(text)
    return _ANCHOR_CACHE[path]


def without_code(text):
    """A Markdown text with its code blocks and inline code blanked (newlines kept): links are prose."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else re.sub(r"`[^`]*`", lambda m: " " * len(m.group(0)), line))
    return "\n".join(lines)


def broken_links(rel, text, root=ROOT):
    """[(line number, link, why)] of the docs links of ``text`` (the file ``rel`` of ``root``) that lead nowhere:
    ``docs/<page>.md#a, #b`` anywhere, and relative Markdown links in Markdown files."""
    bad = []

    def check(line_no, shown, page, anchor_list):
        full = os.path.normpath(os.path.join(root, page))
        if not os.path.isfile(full):
            bad.append((line_no, shown, "no such page"))
            return
        if not full.endswith(".md"):
            return
        have = page_anchors(full) or set()
        for a in anchor_list:
            if a and a not in have:
                bad.append((line_no, shown, f"no heading #{a} in {os.path.relpath(full, root)}"))

    for m in PLAIN_LINK.finditer(text):
        line_no = text.count("\n", 0, m.start()) + 1
        anchors_ = re.findall(r"#([\w-]+)", m.group("anchors") or "")
        check(line_no, m.group(0), os.path.join("docs", m.group("page")), anchors_)
    if rel.endswith(".md"):
        prose = without_code(text)
        for m in MD_LINK.finditer(prose):
            target = m.group("target")
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            line_no = prose.count("\n", 0, m.start()) + 1
            page = os.path.join(os.path.dirname(rel), target) if target else rel
            check(line_no, m.group(0), page, [m.group("anchor")] if m.group("anchor") else [])
    return bad


def scanned(rel):
    """Everything but the run records under results/ (their Markdown pages are scanned)."""
    return not rel.startswith("results/") or rel.endswith(".md")


def test_no_citation_of_a_document_outside_the_repository():
    bad = []
    for rel in filter(scanned, repo_files()):
        text = read_text(os.path.join(ROOT, rel))
        if text is not None:
            bad += [f"{rel}:{n}: {line}" for n, line in outside_citations(text)]
    assert not bad, ("cite the paper, the reference code (repository, file, function) or a page of docs/ "
                     "(docs/algorithms.md) instead:\n" + "\n".join(bad))


def test_every_docs_link_leads_to_a_page_and_heading():
    bad = []
    for rel in filter(scanned, repo_files()):
        text = read_text(os.path.join(ROOT, rel))
        if text is not None:
            bad += [f"{rel}:{n}: {link}: {why}" for n, link, why in broken_links(rel, text)]
    assert not bad, "\n".join(bad)


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The scanners flag planted citations and broken links (so the two tests above can fail)."""
    spec, shared = "spec", ".." + "/shared"  # split, so that this file does not cite them itself
    planted = "\n".join([
        f"# see {spec} mdc {SECTION}9.3",
        f"x = 1  # ({spec} {SECTION}14 item 13)",
        f'"""{spec.title()} yoco B9 says so."""',
        f"Specs: `{shared}/spec/mdc.md`",
        f"a bare ({SECTION}5.2) number",
        "MDC reference reg_ipcx.py, select_reg_ipc; docs/algorithms.md#mls-selection",
    ])
    assert [n for n, _ in outside_citations(planted)] == [1, 2, 3, 4, 5]
    assert outside_citations(f'assert "{spec} mdc" not in text') != []  # no exception, a test's assertion included

    d = "docs"  # (split as above: these links are meant to be broken)
    (tmp_path / d).mkdir()
    (tmp_path / d / "page.md").write_text("# Page\n\n## A section\n\n```\n# not a heading\n```\n", encoding="utf-8")
    good = f"{d}/page.md#a-section, #page and [x](page.md#a-section) [y](#page) `[code](nowhere.md)`"
    assert broken_links(f"{d}/page.md", good, root=str(tmp_path)) == []
    bad = f"{d}/page.md#a-section, #nope; {d}/gone.md; [z](page.md#not-a-heading) [w](missing.md)"
    found = broken_links(f"{d}/page.md", bad, root=str(tmp_path))
    assert [why for _, _, why in found] == [f"no heading #nope in {d}/page.md", "no such page",
                                           f"no heading #not-a-heading in {d}/page.md", "no such page"], found
    assert "not-a-heading" not in anchors((tmp_path / d / "page.md").read_text(encoding="utf-8"))
    assert slug("## MDC ablation switches (Tables 3, 5, 6)") == "mdc-ablation-switches-tables-3-5-6"
    assert slug("### Baselines A, B, C and MDC") == "baselines-a-b-c-and-mdc"
