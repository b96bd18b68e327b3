# A Python script run unchanged by CPython for WASI as a Phase job (scripts/test): it reads the
# CSV files it is given in /work/in, writes a summary to /work/out and tidies up after itself.
import csv
import json
import os

totals = {}
for name in sorted(os.listdir("/work/in")):
    with open(os.path.join("/work/in", name), newline="") as f:
        for row in csv.DictReader(f):
            totals[row["item"]] = totals.get(row["item"], 0) + int(row["qty"])
os.makedirs("/work/out", exist_ok=True)
with open("/work/out/summary.json", "w") as f:
    json.dump({"files": len(os.listdir("/work/in")), "totals": totals}, f, sort_keys=True)
os.rename("/work/in/b.csv", "/work/out/b.done.csv")
print("items", len(totals), "total", sum(totals.values()))
