"""A Phase appliance in QEMU, for tests, the demo and benchmarks: boots via qemu/run with the
serial console in a file and a monitor socket, and talks to the job API on a forwarded port."""
import base64, json, os, socket, subprocess, tempfile, time, urllib.error, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY_TIMEOUT = float(os.environ.get("PHASE_READY_TIMEOUT", "90"))
STARTED = []  # every VM started, so a failure can show the right console and none outlives us


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VM:
    def __init__(self, arch, append="", mem="128M", p2p=False, initrd=None, lan=None, rtc=None):
        self.arch = arch
        self.dir = tempfile.mkdtemp(prefix=f"phase-vm-{arch}-")
        self.console = os.path.join(self.dir, "console.log")
        self.monitor = os.path.join(self.dir, "monitor.sock")
        self.port = free_port()
        self.p2p_port = free_port() if p2p else None
        self.started = time.monotonic()
        STARTED.append(self)
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, "qemu/run"), arch, "--port", str(self.port), "--mem", mem,
             "--console", self.console, "--monitor", self.monitor, "--append", append]
            + (["--p2p-port", str(self.p2p_port)] if p2p else [])
            + (["--initrd", initrd] if initrd else []) + (["--lan", str(lan)] if lan else [])
            + (["--rtc", rtc] if rtc else []),
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


def kill_all():
    for vm in STARTED:
        vm.kill()


