"""A Phase appliance in QEMU, for tests, the demo and benchmarks: boots via qemu/run with the
serial console in a file and a monitor socket, and talks to the job API on a forwarded port."""
import base64, json, os, re, socket, subprocess, sys, tempfile, time, urllib.error, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY_TIMEOUT = float(os.environ.get("PHASE_READY_TIMEOUT", "90"))
HOST_PHASE = os.path.join(ROOT, "build/x86_64/phase")
HELLO = os.path.join(ROOT, "build/wasm/hello.wasm")
STARTED = []  # every VM started, so a failure can show the right console and none outlives us


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VM:
    def __init__(self, arch, append="", mem="128M", p2p=False, initrd=None, lan=None, rtc=None,
                 usb=None, firmware="uefi", usb_readonly=False, nic=None, nvram=None, data=None):
        """With `usb` (a stick image), the machine boots it through `firmware` (uefi or bios)
        with an e1000e NIC, and the serial port also takes keys (`press`)."""
        self.arch = arch
        self.dir = tempfile.mkdtemp(prefix=f"phase-vm-{arch}-")
        self.console = os.path.join(self.dir, "console.log")
        self.monitor = os.path.join(self.dir, "monitor.sock")
        self.serial = os.path.join(self.dir, "serial.sock") if usb else None
        self.port = free_port()
        self.p2p_port = free_port() if p2p else None
        self.started = time.monotonic()
        STARTED.append(self)
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, "qemu/run"), arch, "--port", str(self.port), "--mem", mem,
             "--console", self.console, "--monitor", self.monitor]
            + (["--usb", usb, "--firmware", firmware, "--serial-socket", self.serial] if usb else ["--append", append])
            + (["--usb-readonly"] if usb_readonly else []) + (["--nic", nic] if nic else [])
            + (["--nvram", nvram] if nvram else [])
            + (["--p2p-port", str(self.p2p_port)] if p2p else [])
            + (["--initrd", initrd] if initrd else []) + (["--lan", str(lan)] if lan else [])
            + (["--rtc", rtc] if rtc else []) + (["--data", data] if data else []),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "qemu.err"), "w"))

    def log(self):
        try:
            return open(self.console, errors="replace").read()
        except FileNotFoundError:
            return ""

    def wait_for(self, text, timeout, after=None):
        """Seconds from QEMU start until `text` is on the console (after the line holding
        `after`, if given: e.g. the second kernel's ready line after a kexec)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if after is not None:
                i = log.find(after)
                log = log[i + len(after):] if i >= 0 else ""
            if text in log:
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                raise AssertionError(f"QEMU exited ({self.proc.returncode}) before {text!r}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout:.0f}s")

    def http(self, method, path, body=None, timeout=30):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def job(self, module, data):
        body = json.dumps({"module": base64.b64encode(module).decode(), "input": base64.b64encode(data).decode()})
        status, out = self.http("POST", "/v1/jobs", body.encode())
        assert status == 200, f"job: HTTP {status}: {out[:300]!r}"
        return json.loads(out)

    def wait_quiet(self, quiet, timeout):
        """Waits until the console has printed nothing for `quiet` seconds: firmware that has
        drawn a dialog and waits for a key (keys sent while it still draws can be lost)."""
        deadline = time.monotonic() + timeout
        size, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = os.path.getsize(self.console) if os.path.exists(self.console) else 0
            if now != size:
                size, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.1)
        raise AssertionError(f"the console did not go quiet for {quiet}s within {timeout:.0f}s")

    def press(self, keys, gap=0.3):
        """Types on the serial console, one key (a str, e.g. "\\x1b[B" for down) at a time."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.serial)
            for k in keys:
                s.sendall(k.encode())
                time.sleep(gap)

    def monitor_cmd(self, cmd):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.monitor)
            s.sendall(cmd.encode() + b"\n")
            time.sleep(0.2)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"QEMU still running {timeout}s after the request to stop")

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Seconds from QEMU start to PID 1's `ready in` line."""
        return self.wait_for("ready in", timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def verify_receipt(resp, module, data, node_key):
    """The receipt must verify with the host's `phase receipt verify` against what was sent."""
    d = tempfile.mkdtemp(prefix="phase-receipt-")
    paths = {n: os.path.join(d, n) for n in ("receipt", "input", "stdout")}
    open(paths["receipt"], "w").write(json.dumps(resp["receipt"]))
    open(paths["input"], "wb").write(data)
    open(paths["stdout"], "wb").write(base64.b64decode(resp["stdout"]))
    r = subprocess.run([HOST_PHASE, "receipt", "verify", paths["receipt"], "--module", HELLO,
                        "--input", paths["input"], "--stdout", paths["stdout"], "--key", node_key],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"receipt rejected: {r.stderr.strip()}"


def kill_all():
    for vm in STARTED:
        vm.kill()


def readable(log):
    """A console log as text: the firmware's screen drawing (escape sequences, box characters,
    padding) would otherwise fill a failure's tail with nothing a reader can use."""
    text = re.sub(r"\x1b\[[0-9;=?]*[a-zA-Z]", " ", log)
    text = re.sub(r"[^\x20-\x7e\n]", "", text)
    return re.sub(r" {3,}", "  ", text)


def run_tests(tests, name):
    """Runs `tests` (functions of the arch, returning a detail line) for the arch named in
    argv (`--only NAME` for a subset), each VM killed after its test and the consoles of a
    failed test's VMs printed; prints `NAME ARCH: N passed, M failed` and exits 1 on a failure."""
    arch = sys.argv[1]
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    passed = failed = 0
    for test in tests:
        if only and only not in test.__name__:
            continue
        t0 = time.monotonic()
        first = len(STARTED)
        try:
            detail = test(arch)
            passed += 1
            print(f"ok   {arch} {test.__name__} ({time.monotonic() - t0:.1f}s): {detail}", flush=True)
        except Exception as e:
            failed += 1
            print(f"FAIL {arch} {test.__name__}: {e}", flush=True)
            # The consoles of the VMs this test started are the evidence: every line of PID 1
            # (each kernel's, across kexecs), then the console's tail.
            for vm in STARTED[first:]:
                log = vm.log()
                print(f"---- console of {vm.arch} VM on port {vm.port} ({vm.console}) ----")
                print("\n".join(line for line in log.splitlines() if line.startswith("phase: ")))
                print("---- its last 3000 characters, without escape sequences and box drawing ----")
                print(readable(log)[-3000:])
                print("---- end of console ----", flush=True)
        finally:
            for vm in STARTED[first:]:
                vm.kill()
    kill_all()
    print(f"{name} {arch}: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
