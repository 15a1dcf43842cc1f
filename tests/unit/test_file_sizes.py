"""No product `.py` file is past the 450-line ceiling (docs/design.md §7: about 400 lines, 450 at
most; past that a file usually has two jobs). The failure names each file and its count, so the
split can start from the biggest.
"""
from __future__ import annotations

from pathlib import Path

CEILING = 450
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("executor", "config", "healthcheck")


def line_counts() -> dict[str, int]:
    return {str(path.relative_to(ROOT)): len(path.read_bytes().splitlines())
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def test_the_packages_hold_python_files():
    counts = line_counts()
    assert {name.split("/")[0] for name in counts} == set(PACKAGES)


def test_no_product_file_is_over_the_ceiling():
    over = {name: n for name, n in line_counts().items() if n > CEILING}
    assert over == {}, f"over {CEILING} lines: " + ", ".join(
        f"{name} {n}" for name, n in sorted(over.items(), key=lambda item: -item[1]))
