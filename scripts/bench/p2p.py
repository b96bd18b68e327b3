"""Driver of scripts/bench-p2p. Every process it starts is killed (by PID) at the end."""
import base64, http.client, json, os, re, statistics, subprocess, sys, tempfile, time

PHASE = "build/x86_64/phase"
N = int(sys.argv[1])
procs = []
tmp = tempfile.mkdtemp(prefix="phase-bench-p2p-")


def start(args, ns=None, name="node"):
    log = os.path.join(tmp, f"{name}-{len(procs)}.log")
    cmd = [PHASE, "node", "--http", "127.0.0.1:0"] + args
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    procs.append(p)
    return p, log


def wait_log(log, pattern, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, open(log).read())
        if m:
            return m
        time.sleep(0.01)
    raise RuntimeError(f"{log}: no {pattern!r} within {timeout}s")


def stamp(log, pattern):
    """Boot-clock stamp of the first log line matching pattern."""
    for line in open(log):
        if re.search(pattern, line):
            return float(re.match(r"phase: \[\s*([0-9.]+)\]", line).group(1))
    return None


def http_addr(log):
    return wait_log(log, r"listening on http://(\S+)").group(1)


def get(addr, path):
    c = http.client.HTTPConnection(addr, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, json.loads(r.read())


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


try:
    # 1. mDNS between two network namespaces joined by a veth pair.
    times = []
    if os.geteuid() == 0:
        tag = f"bp{os.getpid() % 10000}"
        sh = lambda c: subprocess.run(c, shell=True, check=True)
        for run in range(3):
            sh(f"ip netns add {tag}a; ip netns add {tag}b; ip link add {tag}x netns {tag}a type veth peer name {tag}y netns {tag}b")
            sh(f"ip -n {tag}a addr add 10.214.0.1/24 dev {tag}x; ip -n {tag}a link set {tag}x up; ip -n {tag}a link set lo up")
            sh(f"ip -n {tag}b addr add 10.214.0.2/24 dev {tag}y; ip -n {tag}b link set {tag}y up; ip -n {tag}b link set lo up")
            pa, la = start(["--p2p", "/ip4/0.0.0.0/tcp/0", "--mdns"], f"{tag}a", "mdns")
            wait_log(la, r"listening on /ip4/10")
            pb, lb = start(["--p2p", "/ip4/0.0.0.0/tcp/0", "--mdns"], f"{tag}b", "mdns")
            wait_log(lb, r"p2p: connected")
            times.append(stamp(lb, r"p2p: connected") - stamp(lb, r"p2p: peer id"))
            for p in (pa, pb):
                p.kill(); p.wait()
            subprocess.run(f"ip netns del {tag}a; ip netns del {tag}b", shell=True)
    # 2. A cluster of N nodes on loopback, all bootstrapped from node 0.
    p0, l0 = start(["--p2p", "/ip4/127.0.0.1/tcp/0"], name="c")
    a0 = http_addr(l0)
    boot = get(a0, "/v1/status")[1]["p2p"]["listen"][0]
    nodes = [(p0, l0, a0)]
    for i in range(N - 1):
        p, l = start(["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", boot], name="c")
        nodes.append((p, l, http_addr(l)))
    for p, l, a in nodes[1:]:
        wait_log(l, r"dht bootstrap done")
    time.sleep(2)  # let capability records settle
    # A newcomer filling its routing table from node 0 alone.
    pn, ln = start(["--p2p", "/ip4/127.0.0.1/tcp/0", "--bootstrap", boot], name="new")
    m = wait_log(ln, r"dht bootstrap done, (\d+) peers")
    fill = stamp(ln, r"dht bootstrap done") - stamp(ln, r"p2p: peer id")
    table = int(m.group(1))
    # Provider lookups from many nodes.
    lookups = []
    for _, _, a in nodes[: min(N, 20)]:
        for _ in range(5):
            status, body = get(a, "/v1/providers?cap=wasm/x86_64")
            if status == 200 and body["providers"]:
                lookups.append(body["lookup_us"] / 1000)
    rss = [rss_kib(p.pid) / 1024 for p, _, _ in nodes]
    # 3. Remote job overhead: hello on node 1 locally vs placed from node 0 on node 1.
    hello = base64.b64encode(open("build/wasm/hello.wasm", "rb").read()).decode()
    peer1 = get(nodes[1][2], "/v1/status")[1]["p2p"]["peer_id"]

    def latencies(addr, extra, n=300):
        c = http.client.HTTPConnection(addr, timeout=30)
        out = []
        for i in range(n + 20):
            body = json.dumps(dict({"module": hello, "input": "SGk="}, **extra))
            t = time.perf_counter()
            c.request("POST", "/v1/jobs", body, {"Content-Type": "application/json"})
            r = c.getresponse(); r.read()
            assert r.status == 200, r.status
            if i >= 20:
                out.append((time.perf_counter() - t) * 1000)
        return sorted(out)

    local = latencies(nodes[1][2], {})
    remote = latencies(a0, {"placement": peer1})
    pct = lambda v, q: v[min(len(v) - 1, int(q * len(v)))]

    def row(name, value, target, ok):
        print(f"  {name:<46} {value:<26} target {target:<12} {'met' if ok else 'MISSED'}")

    print(f"\nbench-p2p ({N} nodes on loopback)")
    if times:
        row("LAN discovery by mDNS (netns pair)", f"{statistics.median(times) * 1000:.0f} ms median of {len(times)}", "<= 1000 ms", statistics.median(times) <= 1.0)
    else:
        print("  LAN discovery by mDNS: skipped (needs root for network namespaces)")
    print(f"  {'routing table from one bootstrap peer':<46} {fill * 1000:.0f} ms to a table of {table} of {N} peers")
    if lookups:
        lookups.sort()
        row("DHT provider lookup p95", f"{pct(lookups, 0.95):.2f} ms (p50 {pct(lookups, 0.5):.2f}, n={len(lookups)})", "<= 300 ms", pct(lookups, 0.95) <= 300)
        print(f"  {'':<46} (Kademlia stores records on the 20 closest of {N} nodes: many lookups")
        print(f"  {'':<46}  are answered from the asking node's own store; loopback has no latency)")
    row("node RSS (mean, max)", f"{statistics.mean(rss):.1f}, {max(rss):.1f} MiB", "<= 20 MiB", max(rss) <= 20)
    over50 = pct(remote, 0.5) - pct(local, 0.5)
    row("remote job overhead p50", f"{over50:.2f} ms (local {pct(local, 0.5):.2f}, remote {pct(remote, 0.5):.2f})", "<= 5 ms", over50 <= 5)
    print(f"  {'remote job overhead p99':<46} {pct(remote, 0.99) - pct(local, 0.99):.2f} ms (local {pct(local, 0.99):.2f}, remote {pct(remote, 0.99):.2f})")
finally:
    cleanup()
