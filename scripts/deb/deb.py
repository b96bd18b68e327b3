#!/usr/bin/env python3
"""Lays out and builds the binary package phase_<version>_<debarch>.deb with dpkg-deb
(scripts/build-deb is the entry point; docs/host.md describes the package).

usage: deb.py --arch amd64|arm64 --binary PATH --version V --epoch SECONDS --out DIR [--runner CMD]
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TARGETS = {"amd64": "x86_64-unknown-linux-musl", "arm64": "aarch64-unknown-linux-musl"}
LICENSE_FILES = ("LICENSE", "LICENCE", "COPYING", "UNLICENSE", "NOTICE")


def write(path, data, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    path.chmod(mode)


def gz(data, epoch):
    """gzip -9n: no name, a fixed time, so the package is reproducible."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=epoch) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def linked_crates(target):
    """The crates statically linked into `phase` for this target: (name, version, license,
    directory), from cargo metadata's resolved graph, normal dependencies only."""
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", target],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    start = next(p["id"] for p in meta["packages"] if p["name"] == "phase")
    seen, todo = set(), [start]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            if any(k["kind"] is None for k in dep["dep_kinds"]):
                todo.append(dep["pkg"])
    out = []
    for pid in seen:
        p = packages[pid]
        if p["source"] is None:  # Phase's own crates: covered by the Files: * stanza
            continue
        out.append((p["name"], p["version"], p.get("license") or "see its license files", Path(p["manifest_path"]).parent))
    return sorted(out)


def copyright_file(crates, year):
    lines = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
        "Upstream-Name: phase",
        "",
        "Files: *",
        f"Copyright: {year} The Phase developers",
        "License: Apache-2.0",
        "Comment: /usr/bin/phase is a static binary. It also contains the Rust crates listed",
        " below, each under the license expression its author declared; their license texts and",
        " copyright notices are in /usr/share/doc/phase/third-party-licenses.gz.",
        " .",
    ]
    lines += [f" {n} {v}: {lic}" for n, v, lic, _ in crates]
    lines += [
        "",
        "License: Apache-2.0",
        " Licensed under the Apache License, Version 2.0 (the \"License\"); you may not use this",
        " file except in compliance with the License.",
        " .",
        " On Debian systems, the complete text of the Apache License, Version 2.0 can be found in",
        " \"/usr/share/common-licenses/Apache-2.0\".",
    ]
    return "\n".join(lines) + "\n"


def third_party_licenses(crates):
    parts = []
    for name, version, lic, directory in crates:
        files = sorted(f for f in directory.iterdir() if f.is_file() and f.name.upper().startswith(LICENSE_FILES))
        parts.append(f"==== {name} {version} ({lic})\n")
        if not files:
            parts.append("(the crate ships no license file; its declared license is above)\n\n")
        for f in files:
            parts.append(f"---- {f.name}\n{f.read_text(errors='replace').rstrip()}\n\n")
    return "".join(parts)


def changelog(version, epoch):
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch))
    return (f"phase ({version}) unstable; urgency=medium\n\n"
            "  * Built from the Phase repository (the package is native: the changelog of the\n"
            "    code is its git history).\n\n"
            f" -- Phase developers <maintainers@phase.invalid>  {date}\n")


def control(arch, version, installed_kib):
    return f"""Package: phase
Version: {version}
Architecture: {arch}
Maintainer: Phase developers <maintainers@phase.invalid>
Installed-Size: {installed_kib}
Depends: adduser
Section: net
Priority: optional
Description: peer-to-peer compute and boot network node
 Phase runs WebAssembly jobs (WASI preview 1) for clients and returns each
 result with an Ed25519-signed receipt the client verifies; it serves
 publisher-signed boot releases and joins a libp2p peer network (mDNS,
 Kademlia, Noise).
 .
 This package runs `phase node` as the hardened systemd service
 phase-node.service, on loopback by default; its options are in
 /etc/default/phase and the node key in /var/lib/phase.
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=sorted(TARGETS), required=True)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--epoch", type=int, required=True, help="SOURCE_DATE_EPOCH: every timestamp in the package")
    ap.add_argument("--out", required=True)
    ap.add_argument("--runner", default="", help="runs a foreign binary for its --help (qemu-user)")
    a = ap.parse_args()

    stage = Path(tempfile.mkdtemp(prefix="phase-deb-"))
    try:
        root = stage / "root"
        write(root / "usr/bin/phase", Path(a.binary).read_bytes(), 0o755)
        write(root / "lib/systemd/system/phase-node.service", (HERE / "debian/phase-node.service").read_text())
        write(root / "etc/default/phase", (HERE / "debian/default").read_text())
        man = subprocess.run([sys.executable, str(HERE / "manpage.py"), "--runner", a.runner, "--version", a.version,
                              "--date", time.strftime("%Y-%m-%d", time.gmtime(a.epoch)), a.binary],
                             capture_output=True, text=True)
        if man.returncode != 0:
            sys.exit(man.stderr.strip() or "manpage.py failed")
        write(root / "usr/share/man/man1/phase.1.gz", gz(man.stdout, a.epoch))
        doc = root / "usr/share/doc/phase"
        crates = linked_crates(TARGETS[a.arch])
        write(doc / "copyright", copyright_file(crates, time.gmtime(a.epoch).tm_year))
        write(doc / "third-party-licenses.gz", gz(third_party_licenses(crates), a.epoch))
        write(doc / "changelog.gz", gz(changelog(a.version, a.epoch), a.epoch))
        write(root / "usr/share/lintian/overrides/phase", (HERE / "debian/lintian-overrides").read_text())
        write(doc / "README.Debian", (HERE / "debian/README.Debian").read_text())

        files = sorted(p for p in root.rglob("*") if p.is_file())
        installed_kib = sum((p.stat().st_size + 1023) // 1024 for p in files) + len(list(root.rglob("*"))) - len(files)
        meta = root / "DEBIAN"
        write(meta / "control", control(a.arch, a.version, installed_kib))
        write(meta / "conffiles", "/etc/default/phase\n")
        write(meta / "md5sums", "".join(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(root)}\n" for p in files if not str(p.relative_to(root)).startswith("etc/")))
        for script in ("postinst", "prerm", "postrm"):
            write(meta / script, (HERE / "debian" / script).read_text(), 0o755)
        for p in [root, *root.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
            os.utime(p, (a.epoch, a.epoch), follow_symlinks=False)
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        deb = out / f"phase_{a.version}_{a.arch}.deb"
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(a.epoch))
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)], check=True, env=env, stdout=subprocess.DEVNULL)
        print(deb)
    finally:
        shutil.rmtree(stage)


if __name__ == "__main__":
    main()
