"""The README's walkthrough as steps to run, and how an output is compared with what it shows.

How the README is written so that a test can run it and a person can still copy it:

- Every ```` ```bash ```` block under ``## Five-minute walkthrough`` is run, in order, except
  a block right after a line that starts with ``<!-- not run by tests/test_readme.py``.
- In a block, a step is a run of command lines, then the comment lines right after it: those
  are what the step prints (``# `` and the text; ``#`` alone is an empty line), stdout and
  stderr together. A step without comment lines must print nothing. A blank line ends a step.
- What differs from run to run (ids, tokens, times) or is left out is written ``...``: within
  a line it stands for any text on that line; a line that is only ``...`` stands for one or
  more whole lines.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

SECTION = "## Five-minute walkthrough"
SKIP_MARKER = "<!-- not run by tests/test_readme.py"
ELLIPSIS = "..."


@dataclass(frozen=True)
class Step:
    line: int  # of the README, 1-based, where the step's first command is
    command: str
    expected: tuple[str, ...]


def walkthrough_steps(readme: str) -> list[Step]:
    lines = readme.splitlines()
    start = lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    steps: list[Step] = []
    index = start + 1
    while index < end:
        if lines[index] == "```bash" and not _skipped(lines, index):
            block_end = lines.index("```", index + 1)
            steps.extend(block_steps(lines[index + 1 : block_end], first_line=index + 2))
            index = block_end
        index += 1
    return steps


def _skipped(lines: list[str], fence: int) -> bool:
    return fence > 0 and lines[fence - 1].startswith(SKIP_MARKER)


def block_steps(block: list[str], *, first_line: int) -> list[Step]:
    steps: list[Step] = []
    commands: list[str] = []
    expected: list[str] = []
    start = first_line

    def finish() -> None:
        if commands:
            steps.append(Step(start, "\n".join(commands), tuple(expected)))
        commands.clear()
        expected.clear()

    for offset, text in enumerate(block):
        if text == "#" or text.startswith("# "):
            if not commands:
                raise ValueError(f"README.md:{first_line + offset}: output shown with no command")
            expected.append(text[2:])
        elif not text.strip():
            finish()
        else:
            if expected:
                finish()
            if not commands:
                start = first_line + offset
            commands.append(text)
    finish()
    return steps


def _pattern(expected: tuple[str, ...]) -> re.Pattern[str]:
    parts = []
    for line in expected:
        if line == ELLIPSIS:
            parts.append(r"[^\n]*(?:\n[^\n]*)*")
        else:
            parts.append(r"[^\n]*".join(re.escape(piece) for piece in line.split(ELLIPSIS)))
    return re.compile(r"\n".join(parts))


def shows(expected: tuple[str, ...], printed: str) -> bool:
    """Whether ``printed`` (normalised, see ``normalise``) is what ``expected`` shows."""
    if not expected:
        return printed == ""
    return _pattern(expected).fullmatch(printed) is not None


def normalise(output: str) -> str:
    """Line ends and trailing blanks are not shown in a README (curl -i ends lines with CR)."""
    lines = [line.rstrip() for line in output.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def mismatch_report(step: Step, status: int, printed: str) -> str:
    diff = difflib.unified_diff(
        list(step.expected), printed.splitlines(), "README shows", "printed", lineterm=""
    )
    as_readme = "\n".join(f"# {line}".rstrip() for line in printed.splitlines())
    return (
        f"README.md:{step.line} (exit status {status})\n{step.command}\n"
        + "\n".join(diff)
        + f"\n--- printed, as README lines:\n{as_readme}\n"
    )
