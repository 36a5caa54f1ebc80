#!/usr/bin/python3
"""test_docs_links - the documentation points only at what a user can see

A new user has the tree and nothing else.  So in every Markdown page a
user reads (README, CHANGELOG, docs/, the examples', the binding's and the
benchmarks' READMEs), in the installed header and in every --help text:

  - every relative link names a file in the tree, and a #fragment names a
    heading of that page (GitHub's anchors);
  - no text sends the reader to something outside the tree: a
    PROTOCOL.md, DESIGN.md or STYLE.md (docs/protocol.md is the protocol
    reference), "issue N", "the issue", the notes of an issue, /work/;
  - the README links the licence, the changelog and the compatibility
    policy.

Run by make check (HERALD_SRCDIR, HERALD_BUILDDIR); prints one line per
failure and "N passed, M failed" last; exit 1 on any failure.
"""

import os
import pathlib
import re
import subprocess
import sys

SRC = pathlib.Path(os.environ.get("HERALD_SRCDIR", pathlib.Path(__file__).resolve().parent.parent))
BUILD = pathlib.Path(os.environ.get("HERALD_BUILDDIR", SRC))

PAGES = ["README.md", "CHANGELOG.md", "docs/*.md", "examples/README.md",
         "examples/python/README.md", "bindings/python/README.md", "bench/README.md"]
HEADERS = ["include/herald.h"]
HELP = [["tools/herald", "--help"], ["broker/heraldd", "--help"]]
HELP_COMMANDS = ["pub", "tail", "replay", "read", "status", "inspect", "repair", "cluster"]

#  What no user can open.  Case matters for PROTOCOL.md: docs/protocol.md
#  is the reference and is fine.
OUTSIDE = [
    (re.compile(r"\bPROTOCOL\.md\b"), "PROTOCOL.md is not in the tree (docs/protocol.md is the reference)"),
    (re.compile(r"\bDESIGN\.md\b"), "DESIGN.md is not in the tree"),
    (re.compile(r"\bSTYLE\.md\b"), "STYLE.md is not in the tree"),
    (re.compile(r"\bissues? #?\d+", re.I), "an issue number users cannot see"),
    (re.compile(r"\bthe issue(?:'s)?\b", re.I), "an issue users cannot see"),
    (re.compile(r"notes of", re.I), "notes users cannot see"),
    (re.compile(r"/work/"), "a path on the developers' machine"),
]

LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")

passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped,
    spaces to hyphens (markup characters go too)."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = "".join(c for c in text if c.isalnum() or c in " -")
    return text.replace(" ", "-")


def anchors(path):
    found, seen, fenced = set(), {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("#"):
            continue
        base = slug(line.lstrip("#"))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else "%s-%d" % (base, n))
    return found


def pages():
    for pattern in PAGES:
        yield from sorted(SRC.glob(pattern))


def check_text(name, text):
    """One case per text: every reference to something outside the tree."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for pattern, why in OUTSIDE:
            match = pattern.search(line)
            if match:
                found.append("%s:%d: %r: %s" % (name, number, match.group(0), why))
    check(not found, "\n      ".join(found))


def check_links(page):
    text = page.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        for match in LINK.finditer(line):
            target = match.group(2) or match.group(3)
            if re.match(r"[a-z]+:", target):
                continue                        # http:, https:, mailto:
            where = "%s:%d: %s" % (page.relative_to(SRC), number, target)
            file_part, _, fragment = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            check(linked.exists(), where + ": no such file in the tree")
            if fragment and linked.suffix == ".md" and linked.exists():
                check(fragment in anchors(linked), where + ": no such heading")


for page in pages():
    check_links(page)
    check_text(str(page.relative_to(SRC)), page.read_text(encoding="utf-8"))
for header in HEADERS:
    check_text(header, (SRC / header).read_text(encoding="utf-8"))

readme = (SRC / "README.md").read_text(encoding="utf-8")
for target in ["(LICENSE)", "(CHANGELOG.md)", "(docs/compatibility.md)"]:
    check(target in readme, "README.md does not link %s" % target)
check("Apache License" in readme, "README.md has no licence notice")

commands = [list(c) for c in HELP] + [["tools/herald", c, "--help"] for c in HELP_COMMANDS]
for command in commands:
    program = BUILD / command[0]
    if not program.exists():
        print("skip: %s is not built" % command[0])
        continue
    run = subprocess.run([str(program)] + command[1:], capture_output=True, timeout=30)
    text = (run.stdout + run.stderr).decode("utf-8", "replace")
    check_text(" ".join(command), text)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
