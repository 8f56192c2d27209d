"""Configurable indicators (strings, regular expressions, optional YARA rules) searched over the
memory pages and the changed files as they stream.

Each stream is searched chunk by chunk with bytes.find and compiled bytes regexes (no per-byte
Python), each chunk where it lies; then a window of `overlap` bytes each side of the boundary with
the previous chunk, for the matches that cross it. Each match is counted once: a string of up to
`overlap` + 1 bytes always, a regex match when it is at most `overlap` bytes long (a regex match
that touches the end of the data seen so far waits for the next chunk to know where it ends;
anchors such as `$` see chunk ends). Hits are counted per indicator and place; the
first few keep their offset and a printable excerpt. YARA (yara-python) is used only when it can
be imported; rules given without it are reported as not run, never silently dropped. YARA sees the
same windows (the previous chunk's last `overlap` bytes, then the chunk): each string instance
(yara-python 4.x: Match.strings is a list of StringMatch, each with .identifier and .instances of
.offset/.matched_length) is counted once, under `yara:<rule>` with its string's identifier; a rule
whose condition holds with no string instance (`uint32(0) == ...`) is counted once per stream. A
rule's condition is evaluated per window, so offsets in it (`at`, `uint32(0)`, `filesize`) are the
window's, and strings farther apart than a chunk are not seen together. Regexes are
Python's `re` over bytes: a pattern that starts with a literal is scanned at memchr speed, one
that starts with a class or an alternation is several times slower.
"""

from __future__ import annotations

import re

DEFAULT_OVERLAP = 4096
HITS_KEPT = 20  # per indicator and place (memory pages file, rootfs path)
PLACES_KEPT = 200
EXCERPT = 40


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


class IndicatorError(ValueError):
    """A configured indicator is not usable (bad regex, bad YARA rules)."""


class Scanner:
    def __init__(self, strings=(), regexes=(), yara_rules: str | None = None, overlap: int = DEFAULT_OVERLAP) -> None:
        self.strings = [s.encode() if isinstance(s, str) else bytes(s) for s in strings if s]
        self.regexes = []
        for pattern in regexes:
            try:
                self.regexes.append(re.compile(pattern.encode() if isinstance(pattern, str) else pattern))
            except re.error as exc:
                raise IndicatorError(f"regex {pattern!r} does not compile: {exc}") from None
        self.overlap = max([overlap, *(len(s) - 1 for s in self.strings)])
        self.yara = None
        self.yara_status = "not configured"
        self.yara_failures = 0
        self._yara_open: dict[tuple[str, str], set] = {}  # (scope, place) -> instances that reached the window's end
        if yara_rules:
            try:
                import yara  # noqa: PLC0415 - optional dependency
            except ImportError:
                self.yara_status = "rules given but yara-python is not installed: YARA not run"
            else:
                try:
                    self.yara = yara.compile(source=yara_rules)
                    self.yara_status = "run"
                except Exception as exc:  # noqa: BLE001 - yara.SyntaxError and friends
                    raise IndicatorError(f"YARA rules do not compile: {exc}") from None
        self.active = bool(self.strings or self.regexes or self.yara)
        self._tails: dict[tuple[str, str], tuple[bytes, int]] = {}  # (scope, place) -> (tail, its offset)
        self.hits: dict[tuple[str, str, str], dict] = {}  # (indicator, scope, place) -> record

    def _record(self, indicator, scope: str, place: str, offset: int, buf, start: int, end: int, rule=None, string=None) -> None:
        if not isinstance(indicator, str):  # a needle (bytes) or a compiled regex
            indicator = getattr(indicator, "pattern", indicator).decode("utf-8", "replace")
        key = (indicator, scope, place)
        record = self.hits.get(key)
        if record is None:
            if len(self.hits) >= PLACES_KEPT * max(1, len(self.strings) + len(self.regexes) + 1):
                return
            record = self.hits[key] = {"indicator": indicator, "scope": scope, "where": place, "count": 0, "first": []}
            if rule is not None:
                record["rule"] = rule
        record["count"] += 1
        if len(record["first"]) < HITS_KEPT:
            excerpt = bytes(buf[max(0, start - 8) : min(len(buf), end + EXCERPT)])
            record["first"].append({"offset": offset, "excerpt": _printable(excerpt)})
            if rule is not None:
                record["first"][-1]["string"] = string

    def feed(self, chunk, scope: str, place: str) -> None:
        """Search the next chunk (bytes or bytearray, used only during the call) of the stream
        `place` (a pages image, a file path), where it is (no copy), then a small window across the
        boundary with the previous chunk. A regex match touching the end of what has been seen is
        counted only once more data (or end()) says where it stops: nothing is counted twice."""
        if not self.active:
            return
        key = (scope, place)
        tail, at = self._tails.get(key, (b"", 0))  # the previous chunk's last bytes; the offset after them
        size = len(chunk)
        covered = [0] * len(self.regexes)  # per regex: chunk bytes already inside a match counted in the window
        if tail:  # matches that start in the tail and end in this chunk
            head = bytes(chunk[: self.overlap])
            window, edge, base = tail + head, len(tail), at - len(tail)
            last = len(head) == size  # the window reaches the end of the data seen so far
            for needle in self.strings:
                pos = window.find(needle, max(0, edge - len(needle) + 1))
                while 0 <= pos < edge:
                    self._record(needle, scope, place, base + pos, window, pos, pos + len(needle))
                    pos = window.find(needle, pos + 1)
            for i, regex in enumerate(self.regexes):
                for match in regex.finditer(window):
                    if match.start() >= edge:
                        break
                    if match.end() < edge or match.end() == match.start() or (last and match.end() == len(window)):
                        continue  # counted with the previous chunk; empty; or still open at the end
                    self._record(regex, scope, place, base + match.start(), window, match.start(), match.end())
                    covered[i] = max(covered[i], match.end() - edge)
        for needle in self.strings:
            pos = chunk.find(needle)
            while pos >= 0:
                self._record(needle, scope, place, at + pos, chunk, pos, pos + len(needle))
                pos = chunk.find(needle, pos + 1)
        for i, regex in enumerate(self.regexes):
            for match in regex.finditer(chunk, covered[i]):
                if match.end() == size or match.end() == match.start():
                    continue  # may go on in the next chunk (the window pass or end() counts it); empty
                self._record(regex, scope, place, at + match.start(), chunk, match.start(), match.end())
        if self.yara is not None:
            self._yara(tail, chunk, at, scope, place)
        keep = bytes(chunk[-self.overlap :]) if size >= self.overlap else (tail + bytes(chunk))[-self.overlap :]
        self._tails[key] = (keep, at + size)

    def _yara(self, tail: bytes, chunk, at: int, scope: str, place: str) -> None:
        """The rules over the window tail + chunk. An instance that lies wholly in the tail was
        counted with the previous window; one that ended exactly at the previous window's end (a
        YARA regex or hex jump can grow into this chunk) is not counted again at the same offset."""
        buf, base = tail + bytes(chunk), at - len(tail)
        try:
            matches = self.yara.match(data=buf, timeout=60)
        except Exception as exc:  # noqa: BLE001 - yara.TimeoutError, yara.Error: this window only
            self.yara_failures += 1
            self.yara_status = f"run; {self.yara_failures} window(s) not matched: {' '.join(str(exc).split())[:200]}"
            return
        key = (scope, place)
        was_open, now_open = self._yara_open.pop(key, set()), set()
        for match in matches:
            indicator = f"yara:{match.rule}"
            instances = [(s.identifier, i) for s in match.strings for i in s.instances]
            if not instances and (indicator, scope, place) not in self.hits:  # a condition-only rule
                self._record(indicator, scope, place, base, buf, 0, 0, rule=match.rule, string=None)
            for identifier, instance in instances:
                start, end = instance.offset, instance.offset + instance.matched_length
                seen = (match.rule, identifier, base + start)
                if end <= len(tail):
                    continue
                if end == len(buf):
                    now_open.add(seen)  # may still grow: the next window must not count it again
                if seen in was_open:
                    continue
                self._record(indicator, scope, place, base + start, buf, start, end, rule=match.rule, string=identifier)
        if now_open:
            self._yara_open[key] = now_open

    def end(self, scope: str, place: str) -> None:
        """The stream ended: regex matches still open at its very end are counted."""
        self._yara_open.pop((scope, place), None)
        tail, at = self._tails.pop((scope, place), (b"", 0))
        for regex in self.regexes if tail else ():
            for match in regex.finditer(tail):
                if match.end() == len(tail) and match.end() > match.start():
                    self._record(regex, scope, place, at - len(tail) + match.start(), tail, match.start(), match.end())

    def report(self) -> dict:
        return {
            "strings": [s.decode("utf-8", "replace") for s in self.strings],
            "regexes": [r.pattern.decode("utf-8", "replace") for r in self.regexes],
            "yara": self.yara_status,
            "matches": sorted(self.hits.values(), key=lambda h: (h["scope"], h["where"], h["indicator"])),
        }
