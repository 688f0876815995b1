"""Write benchmark results into docs/BENCHMARKS.md, one marked section per benchmark.

Each section records the machine, the date and the exact command, so numbers are never separated from
how they were measured. Re-running a benchmark replaces only its own section.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
HEADER = """# Benchmarks

Written by the scripts in `bench/` (never by hand); each section says on which machine, when and with which
command it was measured. Timings on these shared machines are noisy: compare numbers measured side by side
in one run (the ratios), not across sections. Accuracy benches write their sections, with the same machine,
date and command lines, beside what they measure instead: `bench.gader_eval`, `bench.gader_real`,
`bench.detector_real` and `bench.gar_ablation` in docs/models.md, `bench.synth_difficulty` and
`bench.synth_realism` in docs/synthgait.md.
"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def update_section(name: str, title: str, body: str, document: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section ``name`` of ``document`` (docs/BENCHMARKS.md by default)."""
    command = " ".join(shlex.quote(arg) for arg in ["python", "-m", f"bench.{Path(sys.argv[0]).stem}", *sys.argv[1:]])
    today = datetime.date.today().isoformat()
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"- machine: {machine()}\n- date: {today}\n- command: `{command}`\n\n{body.strip()}\n"
        f"<!-- /bench:{name} -->"
    )
    text = document.read_text() if document.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = (
        pattern.sub(lambda _match: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    )
    document.parent.mkdir(parents=True, exist_ok=True)
    document.write_text(text)
    print(f"updated section {name!r} of {document}")
