// Runs the bench guests under Node's WASI (preview1) and prints `name value unit` lines.
const { WASI } = require('node:wasi');
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const [wasmDir, cpuN] = process.argv.slice(2);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'phase-bench-'));

function runner(name, data) {
  const mod = new WebAssembly.Module(fs.readFileSync(path.join(wasmDir, name + '.wasm')));
  const inp = path.join(tmp, name + '.in');
  const out = path.join(tmp, name + '.out');
  fs.writeFileSync(inp, data);
  return () => {
    const i = fs.openSync(inp, 'r');
    const o = fs.openSync(out, 'w');
    const wasi = new WASI({ version: 'preview1', args: ['job'], env: {}, stdin: i, stdout: o, returnOnExit: true });
    wasi.start(new WebAssembly.Instance(mod, wasi.getImportObject()));
    fs.closeSync(i);
    fs.closeSync(o);
    return fs.readFileSync(out);
  };
}

const hello = runner('hello', 'Hello, World');
if (hello().toString() !== 'dlroW ,olleH') throw new Error('node hello output');
const samples = [];
for (let i = 0; i < 1200; i++) {
  const t = process.hrtime.bigint();
  hello();
  if (i >= 200) samples.push(Number(process.hrtime.bigint() - t) / 1e3);
}
samples.sort((a, b) => a - b);
console.log(`node_hello_run_p50 ${samples[samples.length >> 1].toFixed(1)} us`);
const cpu = runner('cpu-bench', cpuN);
let best = Infinity;
for (let i = 0; i < 3; i++) {
  const t = process.hrtime.bigint();
  cpu();
  best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e6);
}
console.log(`node_cpu ${best.toFixed(1)} ms`);
