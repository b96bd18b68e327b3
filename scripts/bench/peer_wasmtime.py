"""Runs the bench guests under wasmtime (PyPI) and prints `name value unit` lines.
Per-run time includes the Python binding's own overhead; that is part of what a caller pays."""
import os, sys, tempfile, time
import wasmtime

wasm_dir, cpu_n = sys.argv[1], sys.argv[2]
engine = wasmtime.Engine()
linker = wasmtime.Linker(engine)
linker.define_wasi()
tmp = tempfile.mkdtemp()

def runner(name, data):
    module = wasmtime.Module.from_file(engine, os.path.join(wasm_dir, name + ".wasm"))
    inp = os.path.join(tmp, name + ".in")
    out = os.path.join(tmp, name + ".out")
    with open(inp, "wb") as f:
        f.write(data)
    def run():
        store = wasmtime.Store(engine)
        cfg = wasmtime.WasiConfig()
        cfg.argv = ["job"]
        cfg.stdin_file = inp
        cfg.stdout_file = out
        store.set_wasi(cfg)
        linker.instantiate(store, module).exports(store)["_start"](store)
        return open(out, "rb").read()
    return run

hello = runner("hello", b"Hello, World")
assert hello() == b"dlroW ,olleH"
samples = []
for i in range(1200):
    t = time.perf_counter()
    hello()
    if i >= 200:
        samples.append((time.perf_counter() - t) * 1e6)
samples.sort()
print(f"wasmtime_hello_run_p50 {samples[len(samples) // 2]:.1f} us")
cpu = runner("cpu-bench", cpu_n.encode())
best = min((lambda t: (cpu(), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(3))
print(f"wasmtime_cpu {best * 1e3:.1f} ms")
