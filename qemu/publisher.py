"""Netboot fixtures for tests and benchmarks: a publisher key, signed stores of an arch's real
kernel + initramfs made with the host's `phase publish`, and host `phase node` providers of
them (with fault injection), reachable from QEMU guests as 10.0.2.2:PORT."""
import hashlib, os, socket, subprocess, tempfile, time, urllib.request

from vm import HOST_PHASE, ROOT, free_port


def free_port_udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Publisher:
    """A publisher key and signed stores of this arch's real kernel + initramfs, made with the
    host's `phase publish`; and host `phase node` providers of them (fault fixtures)."""

    def __init__(self, arch):
        self.arch = arch
        self.dir = tempfile.mkdtemp(prefix=f"phase-publish-{arch}-")
        self.procs = []
        self.key = self.keygen("publisher.key")
        tty = "ttyS0" if arch == "x86_64" else "ttyAMA0"
        self.cmdline = f"console={tty} panic=-1"

    def path(self, name):
        return os.path.join(self.dir, name)

    def keygen(self, name):
        out = subprocess.run([HOST_PHASE, "manifest", "keygen", "--out", self.path(name)], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]

    def publish(self, store, key="publisher.key", version=1, extra=(), kernel=None, drivers=False):
        build = os.path.join(ROOT, "build", self.arch)
        if drivers:
            extra = (*extra, "--drivers", os.path.join(build, "drivers.cpio.zst"))
        r = subprocess.run([HOST_PHASE, "publish", "--key", self.path(key), "--arch", self.arch, "--version", str(version),
                            "--kernel", kernel or os.path.join(build, "kernel"), "--initramfs", os.path.join(build, "initramfs.cpio.zst"),
                            "--cmdline", self.cmdline, "--store", self.path(store), *extra], capture_output=True, text=True)
        assert r.returncode == 0, f"publish: {r.stderr.strip()}"
        return self.path(store)

    def publish_on(self, node_url, token_file, version, extra=(), cmdline=None):
        """`phase publish --node`: signs this arch's kernel + initramfs as `version` and sends
        the release to a running node; returns the node's answer line."""
        build = os.path.join(ROOT, "build", self.arch)
        r = subprocess.run([HOST_PHASE, "publish", "--key", self.path("publisher.key"), "--arch", self.arch, "--version", str(version),
                            "--kernel", os.path.join(build, "kernel"), "--initramfs", os.path.join(build, "initramfs.cpio.zst"),
                            "--cmdline", cmdline or self.cmdline, "--node", node_url, "--operator-token-file", token_file, *extra],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"publish --node: {r.stdout.strip()} {r.stderr.strip()}"
        return r.stdout.strip()

    def trusting_initrd(self, name, *keys):
        """This arch's initramfs with `keys` added to its /etc/phase/trust (a second archive):
        an image whose own keys are its only trust."""
        tree = self.path(name + ".tree")
        os.makedirs(os.path.join(tree, "etc/phase/trust"), exist_ok=True)
        for i, k in enumerate(keys):
            open(os.path.join(tree, f"etc/phase/trust/key{i}.pub"), "w").write(k + "\n")
        base = os.path.join(ROOT, "build", self.arch, "initramfs.cpio.zst")
        subprocess.run([HOST_PHASE, "initramfs", "--root", tree, "--out", self.path(name), "--after", base], check=True, capture_output=True)
        return self.path(name)

    def provider(self, store, *extra, port=None):
        """A host node serving `store` on 127.0.0.1 (the VMs reach it as 10.0.2.2:PORT)."""
        port = port or free_port()
        proc = subprocess.Popen([HOST_PHASE, "node", "--http", f"127.0.0.1:{port}", "--boot-store", store, *extra],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                return f"http://10.0.2.2:{port}"
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"provider for {store} did not start")

    def data_disk(self, name, key_file=None, mib=48):
        """A disk holding one GPT partition named phase-data (FAT32), as a stick's data
        partition; with `key_file`, the node key on it (node/node.key): the node's identity."""
        img, part = self.path(name), self.path(name + ".fat")
        for f in (img, part):
            if os.path.exists(f):
                os.remove(f)
        subprocess.run(["mkfs.fat", "-C", "-F", "32", "-n", "PHASE-DATA", "-h", "2048", part, str(mib * 1024)], check=True, capture_output=True)
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        if key_file:
            subprocess.run(["mmd", "-i", part, "::node"], check=True, env=env)
            subprocess.run(["mcopy", "-i", part, key_file, "::node/node.key"], check=True, env=env)
        with open(img, "wb") as f:
            f.truncate((mib + 2) << 20)
        table = f"label: gpt\nstart=2048, size={mib * 2048}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"phase-data\"\n"
        subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", img], input=table, text=True, check=True)
        subprocess.run(["dd", f"if={part}", f"of={img}", "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"], check=True)
        os.remove(part)
        return img

    def position(self, node_key, channel="stable"):
        """A node's place in this publisher's rollouts (docs/formats.md, "Rollout policy")."""
        h = hashlib.sha256(b"phase-rollout-position/v1\n" + bytes.fromhex(self.key) + channel.encode() + bytes.fromhex(node_key)).digest()
        return int.from_bytes(h[:8], "big") % 10000

    def node_keys(self, n):
        """`n` node keys (files) whose places in this publisher's rollouts fall in different
        percents, lowest first: each can have a wave of its own."""
        keys = []
        for i in range(200):
            path = self.path(f"node{i}.key")
            k = self.keygen(f"node{i}.key")
            p = self.position(k)
            if all(p // 100 != q // 100 for _, _, q in keys):
                keys.append((path, k, p))
            if len(keys) == n:
                return sorted(keys, key=lambda t: t[2])
        raise AssertionError("no node keys with separate waves")

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


