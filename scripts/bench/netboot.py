"""Netboot benchmark (run by scripts/bench-netboot): per hop under TCG, from the guests' own
console timestamps; and the provider's artifact throughput against nginx and Python's
http.server serving the same 16 MiB file on loopback in the same run."""
import os, re, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "qemu"))
from vm import VM, free_port, kill_all  # noqa: E402
from publisher import HOST_PHASE, Publisher, free_port_udp  # noqa: E402


def stamp(log, pattern):
    """The first `phase: [ t]` or kernel `[ t]` timestamp of a line matching pattern."""
    for line in log.splitlines():
        if re.search(pattern, line):
            m = re.search(r"\[\s*([0-9.]+)\]", line)
            if m:
                return float(m.group(1))
    raise AssertionError(f"no line matching {pattern!r}")


def hop_figures(vm):
    log = vm.log()
    first, second = log.split("kexec_core: Starting new kernel", 1)
    first += "kexec_core: Starting new kernel"
    t0 = stamp(first, r"netboot: looking for")
    found = stamp(first, r"p2p: discovered .* via mdns")
    offered = stamp(first, r"offers .* verified, downloading")
    fetched = stamp(first, r"artifacts from .* verified")
    loaded = stamp(first, r"kexec_file_load done")
    execd = stamp(first, r"kexec_core: Starting new kernel")
    ready = float(re.search(r"ready in ([0-9.]+)s", second).group(1))
    mib = float(re.search(r"verified \(SHA-256, size\): ([0-9.]+) MiB in ([0-9.]+)s", first).group(1))
    dl = float(re.search(r"verified \(SHA-256, size\): ([0-9.]+) MiB in ([0-9.]+)s", first).group(2))
    return {
        "discovery (mDNS)": found - t0,
        "manifest fetch+verify": offered - found,
        "artifact download": fetched - offered,
        "kexec load": loaded - fetched,
        "services stop + kexec": execd - loaded,
        "new kernel -> ready": ready,
        "hop total": execd - t0 + ready,
        "_mib_s": mib / dl if dl else 0.0,
    }


def chain(arch, hops):
    pub = Publisher(arch)
    lan = free_port_udp()
    vms, out = [], []
    try:
        pub.publish("good", version=1, extra=("--carry", pub.path("carry.initrd")))
        trust = f"phase.trust={pub.key}"
        a = VM(arch, f"{trust} phase.lan=10.9.0.1/24", initrd=pub.path("carry.initrd"), lan=lan, mem="192M")
        vms.append(a)
        a.wait_ready()
        prev = a
        for i in range(hops):
            vm = VM(arch, f"phase.boot=net {trust} phase.lan=10.9.0.{i + 2}/24", lan=lan, mem="256M")
            vms.append(vm)
            wall = vm.wait_for("ready in", 120, after="Starting new kernel")
            figures = hop_figures(vm)
            figures["_wall"] = wall
            out.append(figures)
            # The next hop must boot from this one: switch the previous provider off.
            prev.monitor_cmd("system_powerdown")
            prev.wait_exit(30)
            prev = vm
    finally:
        pub.stop()
        for vm in vms:
            vm.kill()
    return out


def fetch_speed(url):
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}", url], capture_output=True, text=True, check=True)
    speed, size = r.stdout.split()
    assert int(float(size)) == 16 << 20, f"{url}: {size} bytes"
    return float(speed) / 1048576


def interleaved_medians(urls, rounds=15):
    """Servers take turns within each round, so load drift on the machine hits all alike."""
    speeds = {name: [] for name in urls}
    for _ in range(rounds):
        for name, url in urls.items():
            speeds[name].append(fetch_speed(url))
    return {name: statistics.median(v) for name, v in speeds.items()}


def throughput():
    d = tempfile.mkdtemp(prefix="phase-bench-netboot-")
    procs = []
    try:
        art = os.path.join(d, "kernel.bin")
        with open(art, "wb") as f:
            f.write(os.urandom(16 << 20))
        small = os.path.join(d, "initramfs.bin")
        open(small, "wb").write(b"x" * 1024)
        subprocess.run([HOST_PHASE, "manifest", "keygen", "--out", os.path.join(d, "k")], check=True, capture_output=True)
        subprocess.run([HOST_PHASE, "publish", "--key", os.path.join(d, "k"), "--arch", "x86_64", "--version", "1",
                        "--kernel", art, "--initramfs", small, "--store", os.path.join(d, "store")], check=True, capture_output=True)
        ports = {name: free_port() for name in ("phase", "nginx", "python")}
        procs.append(subprocess.Popen([HOST_PHASE, "node", "--http", f"127.0.0.1:{ports['phase']}", "--boot-store", os.path.join(d, "store")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        conf = os.path.join(d, "nginx.conf")
        open(conf, "w").write(f"""daemon off; worker_processes 1; error_log {d}/nginx.err; pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{ access_log off; sendfile on; tcp_nopush on; client_body_temp_path {d}; proxy_temp_path {d};
  fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{ listen 127.0.0.1:{ports['nginx']}; root {d}; }} }}
""")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        have_nginx = os.path.exists(nginx)
        if have_nginx:
            procs.append(subprocess.Popen([nginx, "-c", conf, "-p", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([sys.executable, "-m", "http.server", str(ports["python"]), "--bind", "127.0.0.1", "--directory", d],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls = {"phase": f"http://127.0.0.1:{ports['phase']}/v1/boot/stable/x86_64/kernel.bin",
                "nginx": f"http://127.0.0.1:{ports['nginx']}/kernel.bin",
                "python": f"http://127.0.0.1:{ports['python']}/kernel.bin"}
        if not have_nginx:
            del urls["nginx"]
        for url in urls.values():
            for _ in range(100):
                try:
                    urllib.request.urlopen(url.rsplit("/", 1)[0] + "/", timeout=1)
                    break
                except urllib.error.HTTPError:
                    break
                except OSError:
                    time.sleep(0.05)
        return interleaved_medians(urls)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    arches = sys.argv[1:] or ["x86_64", "aarch64"]
    t = throughput()
    print("provider throughput, 16 MiB artifact on loopback (curl, servers interleaved, median of 15):")
    for name, v in t.items():
        print(f"  {name:8s} {v:8.0f} MiB/s")
    if "nginx" in t:
        print(f"  phase / nginx = {t['phase'] / t['nginx']:.2f}  (target >= 0.8)")
    print(f"  phase / python http.server = {t['phase'] / t['python']:.2f}")
    for arch in arches:
        hops = 2 if arch == "x86_64" else 1
        for i, f in enumerate(chain(arch, hops)):
            print(f"{arch} hop {i + 1} (TCG, guest clocks; QEMU start -> netbooted node ready {f['_wall']:.1f}s wall):")
            for k, v in f.items():
                if not k.startswith("_"):
                    print(f"  {k:24s} {v:6.2f} s")
            print(f"  {'artifact throughput':24s} {f['_mib_s']:6.1f} MiB/s (TCG guest to guest)")
            print(f"  target: hop <= 6 s on x86_64 TCG -> {'met' if f['hop total'] <= 6 else 'MISSED'}")
    kill_all()


if __name__ == "__main__":
    main()
