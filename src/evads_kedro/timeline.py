"""Time-aligned OCR/ASR timelines (SPEC §2): a structured model with a byte-exact round trip.

Two official text formats exist. *Full* (judge metadata, SFT context)::

    Category: 服饰鞋包
    Duration: 26s

    [Time-aligned Events]:
    Time 0s: OCR Text: [是谁突然降温没有衣服穿啊] ; ASR Text: "是谁突然降温"
    Time 1s: ASR Text: "没有衣服穿啊"
    Time 23-25s: OCR Text: [EXIT]

*ASR-only* (given to the model under test)::

    Voiceover: Duration: 26s

    [Time-aligned Events]:
    Time 0s: Audio Speech: "是谁突然降温"

Contracts:

* ``render_timeline(parse_timeline(s)) == s`` for every official timeline ``s`` (all 2,860
  prompt timelines and 980 RL ``meta_info`` timelines are covered by tests; none needs a raw
  fallback, so the model has none).
* The text is "header + '\\n'.join(event lines)"; the header always ends with a newline, and an
  optional final newline is kept in :attr:`Timeline.trailing_newline` (never set in the data).
* Texts are stored verbatim: OCR boxes are the ``[...]`` content split on ``" | "`` (so odd
  boxes such as ``""`` or ``"a |"`` survive ``" | ".join``), ASR is the ``"..."`` content
  including inner quotes and leading/trailing spaces. ``ocr == ()`` means "no OCR part";
  ``[]`` is ``ocr == ("",)``.
* A second with neither OCR nor ASR has no line. Consecutive seconds whose whole line content
  is identical are merged into a range ``Time a-bs`` (a < b); in the ASR-only format this means
  identical ASR text, because OCR is absent.
* Events are kept in the given order; :meth:`Timeline.per_second` sorts them and rejects
  overlapping events.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

TimelineKind = Literal["full", "asr_only"]
Duration = int | float | str

EVENTS_HEADER = "[Time-aligned Events]:"
OCR_SEP = " | "
_FULL_SEP = " ; "
# Would make an OCR+ASR line ambiguous if it occurred inside an OCR box.
_AMBIGUOUS_OCR = '] ; ASR Text: "'

_NUM = r"(0|[1-9][0-9]*)"
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)s")
_TIME_RE = re.compile(rf"Time {_NUM}(?:-{_NUM})?s: ")
_OCR_ASR_RE = re.compile(r'OCR Text: \[(.*)\] ; ASR Text: "(.*)"', re.DOTALL)
_OCR_RE = re.compile(r"OCR Text: \[(.*)\]", re.DOTALL)
_ASR_RE = re.compile(r'ASR Text: "(.*)"', re.DOTALL)
_AUDIO_RE = re.compile(r'Audio Speech: "(.*)"', re.DOTALL)


class TimelineParseError(ValueError):
    """Text that is not a timeline; carries the 1-based ``line_no`` and the offending ``line``."""

    def __init__(self, reason: str, line_no: int, line: str) -> None:
        self.reason = reason
        self.line_no = line_no
        self.line = line
        super().__init__(f"line {line_no}: {reason}: {line!r}")


def _check_text(value: str, what: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, got {type(value).__name__}")
    if "\n" in value or "\r" in value:
        raise ValueError(f"{what} must not contain a line break: {value!r}")


@dataclass(frozen=True)
class SecondRecord:
    """What is on screen / spoken during one sampled second. ``ocr == ()``: no OCR."""

    second: int
    ocr: tuple[str, ...] = ()
    asr: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ocr", tuple(self.ocr))
        if self.second < 0:
            raise ValueError(f"second must be >= 0, got {self.second}")

    @property
    def is_empty(self) -> bool:
        return not self.ocr and self.asr is None


@dataclass(frozen=True)
class TimelineEvent:
    """One timeline line covering seconds ``start..end`` inclusive (``start == end``: one second)."""

    start: int
    end: int
    ocr: tuple[str, ...]
    asr: str | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ocr", tuple(self.ocr))
        if not 0 <= self.start <= self.end:
            raise ValueError(f"need 0 <= start <= end, got {self.start}-{self.end}")
        if not self.ocr and self.asr is None:
            raise ValueError("an event needs OCR text, ASR text or both")
        for box in self.ocr:
            _check_text(box, "OCR box")
        if self.asr is not None:
            _check_text(self.asr, "ASR text")

    @property
    def seconds(self) -> range:
        return range(self.start, self.end + 1)

    def render(self, kind: TimelineKind) -> str:
        """The event's line (no newline) in the given format."""
        span = f"{self.start}s" if self.start == self.end else f"{self.start}-{self.end}s"
        if kind == "asr_only":
            if self.ocr or self.asr is None:
                raise ValueError(f"ASR-only event must have ASR and no OCR: {self}")
            return f'Time {span}: Audio Speech: "{self.asr}"'
        parts = []
        if self.ocr:
            ocr = OCR_SEP.join(self.ocr)
            if _AMBIGUOUS_OCR in ocr:
                raise ValueError(f"OCR text {ocr!r} contains {_AMBIGUOUS_OCR!r}; cannot render")
            parts.append(f"OCR Text: [{ocr}]")
        if self.asr is not None:
            parts.append(f'ASR Text: "{self.asr}"')
        return f"Time {span}: " + _FULL_SEP.join(parts)


@dataclass
class Timeline:
    """A parsed timeline. ``category`` is None when absent (always so for ``asr_only``);
    ``duration`` is an int (``26s``), a float when its repr round-trips (``26.5s``), else the
    digits as found (``26.50s``)."""

    kind: TimelineKind
    category: str | None
    duration: Duration
    events: list[TimelineEvent] = field(default_factory=list)
    trailing_newline: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("full", "asr_only"):
            raise ValueError(f"unknown timeline kind {self.kind!r}")
        if self.kind == "asr_only" and self.category is not None:
            raise ValueError("an ASR-only timeline has no Category line")
        if self.category is not None:
            _check_text(self.category, "category")
        if not _DURATION_RE.fullmatch(f"{self.duration}s"):
            raise ValueError(f"duration must be a non-negative number, got {self.duration!r}")

    @property
    def duration_seconds(self) -> float:
        return float(self.duration)

    def render(self) -> str:
        return render_timeline(self)

    def per_second(self) -> list[SecondRecord]:
        """One record per covered second (ranges expanded), sorted; seconds without a line are
        absent. Raises ValueError if two events cover the same second."""
        out: dict[int, SecondRecord] = {}
        for ev in self.events:
            for s in ev.seconds:
                if s in out:
                    raise ValueError(f"second {s} is covered by more than one event")
                out[s] = SecondRecord(s, ev.ocr, ev.asr)
        return [out[s] for s in sorted(out)]

    @classmethod
    def from_seconds(
        cls,
        records: Iterable[SecondRecord],
        *,
        kind: TimelineKind,
        category: str | None = None,
        duration: Duration,
    ) -> Timeline:
        """Build a timeline the way the official data is built: empty records are dropped and
        runs of consecutive seconds with identical (ocr, asr) become one range event.
        ``records`` must have strictly increasing seconds; for ``asr_only`` they must carry no
        OCR (use :meth:`to_asr_only` to drop it)."""
        events: list[TimelineEvent] = []
        prev: int | None = None
        for rec in records:
            if prev is not None and rec.second <= prev:
                raise ValueError(f"seconds must increase strictly: {rec.second} after {prev}")
            prev = rec.second
            if rec.is_empty:
                continue
            if kind == "asr_only" and rec.ocr:
                raise ValueError(f"ASR-only timeline cannot hold OCR (second {rec.second})")
            last = events[-1] if events else None
            if (
                last is not None
                and last.end + 1 == rec.second
                and last.ocr == rec.ocr
                and last.asr == rec.asr
            ):
                events[-1] = TimelineEvent(last.start, rec.second, last.ocr, last.asr)
            else:
                events.append(TimelineEvent(rec.second, rec.second, rec.ocr, rec.asr))
        return cls(kind=kind, category=category, duration=duration, events=events)

    def to_asr_only(self) -> Timeline:
        """The ASR-only view: OCR dropped, OCR-only seconds removed, equal ASR re-merged."""
        recs = [SecondRecord(r.second, (), r.asr) for r in self.per_second() if r.asr is not None]
        return Timeline.from_seconds(recs, kind="asr_only", duration=self.duration)


def _parse_duration(raw: str) -> Duration:
    if raw.isdigit():
        return int(raw)
    as_float = float(raw)
    return as_float if repr(as_float) == raw else raw


def _parse_header(lines: list[str]) -> tuple[TimelineKind, str | None, Duration, int]:
    """Return kind, category, duration and the number of header lines."""
    first = lines[0]
    i = 0
    category: str | None = None
    if first.startswith("Voiceover: "):
        kind: TimelineKind = "asr_only"
        prefix = "Voiceover: Duration: "
    elif first.startswith(("Category: ", "Duration: ")):
        kind = "full"
        prefix = "Duration: "
        if first.startswith("Category: "):
            category = first[len("Category: ") :]
            i = 1
    else:
        raise TimelineParseError(
            "expected 'Category: ...', 'Duration: ...' or 'Voiceover: Duration: ...'", 1, first
        )
    if i >= len(lines):
        raise TimelineParseError("missing duration line", i, lines[i - 1])
    dline = lines[i]
    m = _DURATION_RE.fullmatch(dline[len(prefix) :]) if dline.startswith(prefix) else None
    if m is None:
        raise TimelineParseError(f"expected '{prefix}<number>s'", i + 1, dline)
    duration = _parse_duration(m.group(1))
    for j, expected in ((i + 1, ""), (i + 2, EVENTS_HEADER)):
        if j >= len(lines):
            raise TimelineParseError(f"missing {expected!r} header line", j, lines[j - 1])
        if lines[j] != expected:
            raise TimelineParseError(f"expected {expected!r}", j + 1, lines[j])
    if i + 3 >= len(lines):
        raise TimelineParseError(f"missing newline after {EVENTS_HEADER!r}", i + 3, lines[i + 2])
    return kind, category, duration, i + 3


def _parse_event(line: str, line_no: int, kind: TimelineKind) -> TimelineEvent:
    m = _TIME_RE.match(line)
    if m is None:
        raise TimelineParseError("expected 'Time <s>s: ...' or 'Time <a>-<b>s: ...'", line_no, line)
    start = int(m.group(1))
    end = start if m.group(2) is None else int(m.group(2))
    if m.group(2) is not None and end <= start:
        raise TimelineParseError("range end must be greater than its start", line_no, line)
    body = line[m.end() :]
    ocr: tuple[str, ...] = ()
    asr: str | None = None
    if kind == "asr_only":
        am = _AUDIO_RE.fullmatch(body)
        if am is None:
            raise TimelineParseError(
                "ASR-only timeline events must be 'Audio Speech: \"...\"'", line_no, line
            )
        asr = am.group(1)
    elif mm := _OCR_ASR_RE.fullmatch(body):
        ocr, asr = tuple(mm.group(1).split(OCR_SEP)), mm.group(2)
    elif mm := _OCR_RE.fullmatch(body):
        ocr = tuple(mm.group(1).split(OCR_SEP))
    elif mm := _ASR_RE.fullmatch(body):
        asr = mm.group(1)
    else:
        raise TimelineParseError(
            "full timeline events must be 'OCR Text: [...]', 'ASR Text: \"...\"' "
            "or 'OCR Text: [...] ; ASR Text: \"...\"'",
            line_no,
            line,
        )
    return TimelineEvent(start, end, ocr, asr)


def parse_timeline(text: str) -> Timeline:
    """Parse either official format; raise :class:`TimelineParseError` (with line number and
    line) if ``text`` is not a timeline. Inverse of :func:`render_timeline` on official data."""
    if "\r" in text:
        line_no = text[: text.index("\r")].count("\n") + 1
        raise TimelineParseError(
            "carriage return in timeline", line_no, text.split("\n")[line_no - 1]
        )
    lines = text.split("\n")
    kind, category, duration, n_header = _parse_header(lines)
    rest = lines[n_header:]
    trailing = len(rest) > 1 and rest[-1] == ""
    if trailing:
        rest = rest[:-1]
    if rest == [""]:
        rest = []
    events = []
    for k, line in enumerate(rest):
        line_no = n_header + k + 1
        if not line:
            raise TimelineParseError("empty line among events", line_no, line)
        events.append(_parse_event(line, line_no, kind))
    return Timeline(kind, category, duration, events, trailing_newline=trailing)


def render_timeline(tl: Timeline) -> str:
    """Render ``tl`` in its format: header + '\\n'.join(event lines) (+ '\\n' if trailing)."""
    if tl.kind == "asr_only":
        header = [f"Voiceover: Duration: {tl.duration}s"]
    else:
        header = [] if tl.category is None else [f"Category: {tl.category}"]
        header.append(f"Duration: {tl.duration}s")
    header += ["", EVENTS_HEADER]
    body = "\n".join(ev.render(tl.kind) for ev in tl.events)
    return "\n".join(header) + "\n" + body + ("\n" if tl.trailing_newline else "")


def ocr_text(tl: Timeline) -> str:
    """OCR text of every per-second snapshot, one line per covered second, boxes joined by
    ``" | "`` (a range ``3-4s`` appears twice: no de-duplication, as O_den requires)."""
    return "\n".join(OCR_SEP.join(r.ocr) for r in tl.per_second() if r.ocr)


def asr_text(tl: Timeline) -> str:
    """ASR text of every covered second, one line per second (ranges repeated per second)."""
    return "\n".join(r.asr for r in tl.per_second() if r.asr is not None)
