#!/usr/bin/env python3
"""phase(1) from the binary's own help: every command's `--help` (argh renders it from the
CLI definitions in appliance/phase/src/cli.rs), walked recursively and set as roff. The page
therefore cannot drift from the binary it ships with.

usage: manpage.py [--runner CMD] [--date YYYY-MM-DD] PHASE_BINARY > phase.1
"""
import argparse
import re
import subprocess
import sys

SECTION = re.compile(r"^([A-Z][A-Za-z ]*):$")
ENTRY = re.compile(r"^  (\S+(?:, \S+)*)(?:\s{2,}(.*))?$")
MAX_COMMANDS = 64  # a runaway walk is a bug in this script, not a bigger page


def helptext(runner, binary, words):
    out = subprocess.run(runner + [binary] + words + ["--help"], capture_output=True, text=True, timeout=60)
    # argh prints help on stdout and exits 0; anything else is a broken binary.
    if out.returncode != 0 or not out.stdout.startswith("Usage: "):
        sys.exit(f"manpage: `phase {' '.join(words)} --help` failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def parse(text):
    """(usage, description paragraphs, [(section, [(name, description)])])."""
    lines = text.rstrip("\n").split("\n")
    usage = lines[0][len("Usage: "):]
    i, paragraphs, para = 1, [], []
    while i < len(lines) and not SECTION.match(lines[i]):
        if lines[i].strip():
            para.append(lines[i].strip())
        elif para:
            paragraphs.append(" ".join(para))
            para = []
        i += 1
    if para:
        paragraphs.append(" ".join(para))
    sections = []
    while i < len(lines):
        head = SECTION.match(lines[i])
        if head:
            sections.append((head.group(1), []))
        elif lines[i].strip():
            entry = ENTRY.match(lines[i])
            items = sections[-1][1]
            if entry:
                items.append([entry.group(1), entry.group(2) or ""])
            elif items:  # a continuation line, or a description on the line after a long name
                items[-1][1] = (items[-1][1] + " " + lines[i].strip()).strip()
            else:
                sys.exit(f"manpage: cannot read help line {lines[i]!r}")
        i += 1
    return usage, paragraphs, sections


def roff(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def walk(runner, binary):
    """[(words, parsed help)] for the top level and every command below it."""
    found, queue = [], [[]]
    while queue:
        words = queue.pop(0)
        parsed = parse(helptext(runner, binary, words))
        found.append((words, parsed))
        for name, items in parsed[2]:
            if name == "Commands":
                queue += [words + [cmd] for cmd, _ in items]
        if len(found) > MAX_COMMANDS:
            sys.exit("manpage: more than 64 commands: runaway walk")
    return found


def page(found, version, date):
    top_usage, top_paragraphs, _ = found[0][1]
    out = [
        f'.TH PHASE 1 "{date}" "phase {version}" "User Commands"',
        ".nh",
        ".ad l",
        ".SH NAME",
        "phase \\- " + roff(top_paragraphs[0].rstrip(".").split(": ", 1)[-1]),
        ".SH SYNOPSIS",
        ".B phase",
        "\\fIcommand\\fR [\\fIoptions\\fR]",
        ".SH DESCRIPTION",
    ]
    for p in top_paragraphs:
        out += [".PP", roff(p)]
    out += [".PP", "Each command prints this help with \\fB\\-\\-help\\fR. This page is generated from it."]
    out.append(".SH COMMANDS")
    for words, (usage, paragraphs, sections) in found[1:]:
        # The synopsis is filled (wrapped at spaces), hanging after the command's name.
        _, _, rest = usage.partition(" ".join(words) + " ")
        out += [f'.SS "phase {" ".join(words)}"', ".HP", f"\\fBphase {roff(' '.join(words))}\\fR {roff(rest)}" if rest else f"\\fBphase {roff(' '.join(words))}\\fR"]
        for p in paragraphs:
            out += [".PP", roff(p)]
        for name, items in sections:
            if name == "Options" and [n for n, _ in items] == ["--help, help"]:
                continue
            out += [".PP", f"\\fI{roff(name)}:\\fR"]
            for entry, description in items:
                if entry == "--help, help":
                    continue
                out += [".TP", "\\fB" + roff(entry) + "\\fR", roff(description)]
    out += [
        ".SH FILES",
        ".TP",
        ".I /etc/default/phase",
        "Options for \\fBphase node\\fR as run by \\fIphase\\-node.service\\fR (PHASE_NODE_OPTS).",
        ".TP",
        ".I /var/lib/phase",
        "The service's data directory: the node key (node.key) and uploaded modules.",
        ".SH SEE ALSO",
        "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fBsystemd.exec\\fR(5), /usr/share/doc/phase/README.Debian",
    ]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runner", default="", help="e.g. qemu-aarch64-static for a foreign binary")
    ap.add_argument("--date", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("binary")
    a = ap.parse_args()
    sys.stdout.write(page(walk(a.runner.split(), a.binary), a.version, a.date))


if __name__ == "__main__":
    main()
