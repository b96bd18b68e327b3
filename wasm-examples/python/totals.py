# The example web page's file job (sdk/php/examples/async-web): CPython for WASI, unchanged,
# reads the CSV file a visitor uploaded (/work/in/upload.csv, a header row, then rows whose
# first column is a name and whose other columns are numbers) and leaves a CSV of each name's
# totals in /work/out/totals.csv.
import csv
import os

totals = {}
with open("/work/in/upload.csv", newline="") as f:
    rows = csv.reader(f)
    header = next(rows, None)
    if header is None:
        raise SystemExit("the file is empty")
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        try:
            values = [float(v) for v in row[1:]]
        except ValueError as e:
            raise SystemExit(f"line {line}: {e}")
        sums = totals.setdefault(row[0], [0.0] * len(values))
        if len(sums) != len(values):
            raise SystemExit(f"line {line}: {len(values)} numbers, not {len(sums)}")
        totals[row[0]] = [a + b for a, b in zip(sums, values)]
os.makedirs("/work/out", exist_ok=True)
with open("/work/out/totals.csv", "w", newline="") as f:
    out = csv.writer(f, lineterminator="\n")
    out.writerow(header)
    for name in sorted(totals):
        out.writerow([name] + [f"{v:g}" for v in totals[name]])
print(f"{len(totals)} names")
