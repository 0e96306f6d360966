"""`math_accuracy`: reward 1 when the answer is mathematically equal to the reference (math-verify).

SeekrFlow's "numerical accuracy" grader (`seekrai` 0.35.1 `GraderType.MATH_ACCURACY`; the SDK holds
no scoring code, so OpenRFT uses math-verify, as the design says). Both sides are parsed with
`math_verify.parse` and compared with `math_verify.verify(reference, answer)` (6-decimal float
rounding, symbolic equality, sets, intervals, `\\boxed{}`, `\\frac`, percentages).

How each side is read — the text is *the answer itself* (an `<answer>` tag or a dataset field):
- text with `\\boxed`, `$` or an English word (`28 apples`, `the answer is 28`) goes to
  math-verify as is, which finds the math inside;
- otherwise it is parsed as if it were `\\boxed{text}`, so bare LaTeX such as `\\dfrac{3}{4}`,
  `2^{10}` or `\\sqrt{2}` reads as a whole (math-verify alone reads `2^{10}` as `2` and `\\dfrac`
  not at all); if that yields nothing, the plain parse is used.

Fast path: when both sides are plain numbers (`-1,234.5`, optionally in one `\\boxed{}` or `$…$`,
at most 12 significant digits) equality is decided with `Decimal`; values closer than 2e-6 that
are not equal go to math-verify (its 6-decimal rounding decides them). `tests/graders/
test_math_accuracy.py` proves, on a broad table, that the fast path agrees with math-verify.
Parses and verdicts are cached, so a GRPO group sharing one reference parses it once.

A reference math-verify cannot parse at all (`Paris`) scores 0 with `other_error` set: the grader
cannot grade that item. An answer it cannot parse is simply wrong (0, no flag).

Timeouts: math-verify bounds each parse/compare with `signal.alarm` (5 s), which only works in the
main thread (it also replaces any SIGALRM handler, e.g. pytest-timeout's, while it runs). Called
from another thread, the symbolic step runs in one helper process instead (started on first use),
whose main thread has those timeouts; if it gives no verdict in 60 s it is restarted and the
sample is flagged `other_error`. Not done: answers given as words (`twenty-eight`), units
conversion, or multiple-choice letters beyond what math-verify itself does.
"""

from __future__ import annotations

import atexit
import json
import re
import select
import subprocess
import sys
import threading
from decimal import Decimal
from functools import lru_cache
from typing import IO, Any

from openrft.errors import TemplateError
from openrft.graders.context import per_sample
from openrft.graders.result import GradeResult
from openrft.graders.sample import Item, Sample
from openrft.graders.spec import MathAccuracyGrader
from openrft.graders.template import render

MATH_VERIFY_TIMEOUT_SECONDS = 5
"""math-verify's own limit per parse and per comparison (its default)."""
WORKER_TIMEOUT_SECONDS = 60.0
"""Longest wait for the helper process's verdict on one pair before restarting it."""

Verdict = tuple[bool, bool]
"""(the reference parsed, the answer equals it)."""

_NUMBER = re.compile(r"-?(?:[1-9]\d{0,2}(?:,\d{3})+|\d+)(?:\.\d+)?")
_WRAPPED = (re.compile(r"\\boxed\{([^{}]*)\}"), re.compile(r"\$([^$]*)\$"))
_MAX_FAST_DIGITS = 12  # well inside the 15 digits math-verify keeps for floats
_FAST_UNDECIDED = Decimal("0.000002")  # closer than this, 6-decimal rounding may call them equal
_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")


def plain_number(text: str) -> tuple[Decimal, bool] | None:
    """`(value, has_decimal_point)` when `text` is a plain number the fast path may decide."""
    text = text.strip()
    for wrapper in _WRAPPED:
        found = wrapper.fullmatch(text)
        if found:
            text = found.group(1).strip()
            break
    if not _NUMBER.fullmatch(text):
        return None
    digits = text.replace(",", "")
    if len(digits.lstrip("-").replace(".", "").lstrip("0")) > _MAX_FAST_DIGITS:
        return None
    return Decimal(digits), "." in digits


def fast_verdict(reference: str, answer: str) -> Verdict | None:
    """The verdict for two plain numbers, or None when math-verify must decide."""
    gold, pred = plain_number(reference), plain_number(answer)
    if gold is None or pred is None:
        return None
    if gold[0] == pred[0]:
        return True, True
    if not (gold[1] or pred[1]) or abs(gold[0] - pred[0]) > _FAST_UNDECIDED:
        return True, False
    return None


@lru_cache(maxsize=8192)
def candidates(text: str) -> tuple[Any, ...]:
    """What math-verify reads from `text` (see the module docstring for the boxing rule)."""
    text = text.strip()
    if not text:
        return ()
    if "\\boxed" in text or "$" in text or _WORD.search(_COMMAND.sub(" ", text)):
        return _parse(text)
    boxed = _parse("\\boxed{" + text + "}")
    if any(not isinstance(found, str) for found in boxed):
        return boxed
    return _parse(text) or boxed


def _parse(text: str) -> tuple[Any, ...]:
    from math_verify import parse

    return tuple(parse(text, parsing_timeout=MATH_VERIFY_TIMEOUT_SECONDS))


@lru_cache(maxsize=65536)
def symbolic_verdict(reference: str, answer: str) -> Verdict:
    """math-verify's verdict; must run in a main thread (its timeouts use `signal.alarm`)."""
    from math_verify import verify

    gold = candidates(reference)
    if not gold:
        return False, False
    pred = candidates(answer)
    if not pred:
        return True, False
    return True, bool(verify(list(gold), list(pred), timeout_seconds=MATH_VERIFY_TIMEOUT_SECONDS))


def verdict(reference: str, answer: str) -> Verdict | None:
    """Fast path, then math-verify (here or in the helper process); None if it never answered."""
    fast = fast_verdict(reference, answer)
    if fast is not None:
        return fast
    if threading.current_thread() is threading.main_thread():
        return symbolic_verdict(reference, answer)
    return _WORKER.verdict(reference, answer)


def serve() -> None:
    """The helper process: one JSON `[reference, answer]` per stdin line, one verdict per stdout
    line. Run as `python -c` rather than through multiprocessing, which would re-import the
    caller's `__main__` script in the child."""
    protocol = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol
    for line in sys.stdin:
        reference, answer = json.loads(line)
        protocol.write(json.dumps(symbolic_verdict(reference, answer)) + "\n")
        protocol.flush()


class _Worker:
    """One helper process for graders called off the main thread; requests are serialized."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None

    def verdict(self, reference: str, answer: str) -> Verdict | None:
        with self._lock:
            try:
                stdin, stdout = self._pipes()
                stdin.write(json.dumps([reference, answer]) + "\n")
                stdin.flush()
                ready, _, _ = select.select([stdout], [], [], WORKER_TIMEOUT_SECONDS)
                line = stdout.readline() if ready else ""
                if line:
                    parsed, equal = json.loads(line)
                    return bool(parsed), bool(equal)
            except OSError:
                pass  # the helper died (killed, out of memory): restart it on the next call
            self.close()
            return None

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        if self._process is None:
            code = "from openrft.graders.math_accuracy import serve; serve()"
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
                [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        if self._process.stdin is None or self._process.stdout is None:
            raise OSError("the math-verify helper has no pipes")
        return self._process.stdin, self._process.stdout

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.communicate()
            self._process = None


_WORKER = _Worker()
atexit.register(_WORKER.close)


def grade(spec: MathAccuracyGrader, sample: Sample, item: Item) -> GradeResult:
    try:
        answer = render(spec.input, sample, item)
        reference = render(spec.reference, sample, item)
    except TemplateError as exc:
        return GradeResult.failed(spec.name, spec.type, "invalid_variable_error", str(exc))
    result = verdict(reference, answer)
    if result is None:
        return GradeResult.failed(
            spec.name, spec.type, "other_error",
            f"math-verify gave no verdict within {WORKER_TIMEOUT_SECONDS:g} s for this answer",
        )  # fmt: skip
    parsed, equal = result
    if not parsed:
        return GradeResult.failed(
            spec.name, spec.type, "other_error",
            f"the reference {reference[:80]!r} holds no math math-verify can read; math_accuracy "
            "needs a number or LaTeX reference (grade text answers with string_check)",
        )  # fmt: skip
    return GradeResult.of(spec.name, spec.type, float(equal))


grade_batch = per_sample(grade)
