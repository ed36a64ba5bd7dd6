"""Merge the per-benchmark tables (docs/benchmarks_*.md) into docs/benchmarks.md.

    python benchmarks/collect.py
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["inference_speed", "inference_accuracy", "kd", "kd_gpu", "dashboard"]

HEADER = """# Benchmarks

Every table below was written by a script in `benchmarks/` on the machine it names; nothing here is
typed by hand. Re-run a script to refresh its section, then `python benchmarks/collect.py`.
Speed is reported as a ratio against the reference tool measured in the same run, because the
machines are shared and noisy.
"""


def main() -> None:
    docs = ROOT / "docs"
    parts = sorted(docs.glob("benchmarks_*.md"),
                   key=lambda p: (next((i for i, k in enumerate(ORDER) if p.stem == f"benchmarks_{k}"), 99), p.name))
    text = HEADER + "".join("\n" + p.read_text().strip() + "\n" for p in parts)
    (docs / "benchmarks.md").write_text(text)
    print(f"docs/benchmarks.md: {len(parts)} sections ({', '.join(p.stem for p in parts)})")


if __name__ == "__main__":
    main()
