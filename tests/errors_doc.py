"""Write docs/errors.md from the bad-input catalogue (tests/error_cases.py): ``python tests/errors_doc.py``.

``tests/test_error_catalogue.py`` checks that the committed file equals :func:`render`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from error_cases import API_EXIT, CASES, Case

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
HEADER = """# Bad inputs and what gradiend says

Generated from `tests/error_cases.py` by `python tests/errors_doc.py`; every row is run by
`tests/test_error_catalogue.py` (through the real CLI in-process, or the Python API), which asserts the exit code,
that the message contains the fragment shown, that no traceback is printed (`gradiend -v …` shows the log) and that
nothing half-written is left that a later command would take for finished. Exit codes: 2 bad input or state,
1 the environment (disk full, output not writable), 130 interrupted (Ctrl-C / SIGTERM).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _call(case: Case) -> str:
    if case.exit_code == API_EXIT:
        return f"`{case.call[0]}({', '.join(case.call[1:])})`"
    return "`gradiend " + " ".join(case.call) + "`"


def render() -> str:
    lines = [HEADER]
    for group in dict.fromkeys(c.group for c in CASES):
        lines += [f"\n## {group.capitalize()}\n", "| case | input | call | message contains | exit |",
                  "|---|---|---|---|---|"]
        for c in (c for c in CASES if c.group == group):
            lines.append(f"| {c.id} | {_cell(c.input)} | {_cell(_call(c))} | {_cell(c.fragment)} | {c.exit_code} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC} ({len(CASES)} cases)")
