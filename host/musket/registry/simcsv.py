"""The connectivity vendor's SIM list: a CSV file with the columns ICCID, plan and state.

The file is read one row at a time, so a list of any size takes the same memory: `SimReader`
yields each good row and keeps the problems of the bad ones (the first MAX_PROBLEMS_SHOWN
by line, all of them counted). Checks that need every row (an ICCID repeated in the file, an
ICCID the registry already holds) are the registry's, in SQL, over the rows it staged
(core.Registry.import_sims); one bad row and nothing is imported.

Column names are matched without regard to case or surrounding spaces, other columns are
ignored, blank lines are skipped, a UTF-8 byte-order mark is allowed. A UTF-16 file (what a
spreadsheet writes as "Unicode text") is named as such.
"""

from __future__ import annotations

import bisect
import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from musket.errors import BadInput, ExitCode, Refused
from musket.identity import IdentityError, check_iccid
from musket.registry.database import RegistryError

REQUIRED_COLUMNS = ("iccid", "plan", "state")
# A SIM enters the registry unbound: "bound" and "active" belong to SIMs in a device, and only
# provisioning puts a SIM in a device.
IMPORT_STATES = ("inventory", "suspended", "retired")
MAX_PLAN_LENGTH = 64
MAX_PROBLEMS_SHOWN = 20
# Characters in one physical line: a vendor's row is well under 1 KB; a longer line is not a
# SIM list (and reading it whole would cost its size in memory).
MAX_LINE_LENGTH = 1 << 20
# Bytes looked at to tell UTF-16 without a byte-order mark: ASCII text in UTF-16 has a NUL in
# every other byte.
_SNIFF_BYTES = 64
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class SimRow:
    line: int
    iccid: str
    plan: str
    state: str


@dataclass
class ImportSummary:
    """What an import brought in: the number of SIMs, how many in each state, and the first
    and last ICCID in the file's order."""

    count: int = 0
    states: dict[str, int] = field(default_factory=dict)
    first: str | None = None
    last: str | None = None

    def add(self, row: SimRow) -> None:
        self.count += 1
        self.states[row.state] = self.states.get(row.state, 0) + 1
        if self.first is None:
            self.first = row.iccid
        self.last = row.iccid


class SimImportError(RegistryError, BadInput):
    """The file cannot be imported. `problems` holds the first MAX_PROBLEMS_SHOWN problems as
    "line N: why", in line order; `count` is how many there were in all."""

    def __init__(self, source: str, problems: list[str], count: int | None = None, *,
                 message: str | None = None) -> None:
        self.source = source
        self.problems = problems
        self.count = len(problems) if count is None else count
        if message is None:
            shown = problems[:MAX_PROBLEMS_SHOWN]
            more = self.count - len(shown)
            text = "; ".join(shown) + (f"; and {more} more" if more else "")
            message = (f"{source}: nothing imported, {self.count} bad "
                       f"row{'s' if self.count != 1 else ''}: {text}")
        super().__init__(message)


class SimsAlreadyKnown(SimImportError, Refused):
    """Every row is good but the registry already holds some of the ICCIDs."""

    # Stated, not inherited: in this class's MRO BadInput (through SimImportError) comes
    # before Refused.
    exit_code = ExitCode.REGISTRY_REFUSED
    hint = ("take those rows out of the file (`musket registry list --sims` shows what the "
            "registry holds), then import it again")


class Problems:
    """Problems by line: every one counted, the first MAX_PROBLEMS_SHOWN by line kept. They
    may be added in any order (the reader's, then the registry's checks)."""

    def __init__(self) -> None:
        self.count = 0
        self._kept: list[tuple[int, str]] = []

    def add(self, line: int, text: str) -> None:
        self.count += 1
        if len(self._kept) < MAX_PROBLEMS_SHOWN or line < self._kept[-1][0]:
            bisect.insort(self._kept, (line, text))
            del self._kept[MAX_PROBLEMS_SHOWN:]

    def add_found(self, found: list[tuple[int, str]], count: int) -> None:
        """Adds `found` (a check's first problems by line) and counts `count` in all."""
        for line, text in found:
            self.add(line, text)
        self.count += count - len(found)

    @property
    def shown(self) -> list[str]:
        return [text for _, text in self._kept]

    def __bool__(self) -> bool:
        return self.count > 0


class SimReader:
    """The file's good rows, one at a time, in the file's order; the bad ones go to
    `problems`. Opening it checks what can be checked before the first row (the file can be
    read, is not UTF-16, has a header with the columns), raising SimImportError.

        with SimReader("sims.csv") as reader:
            for row in reader: ...
            if reader.problems: ...
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.source = self.path.name
        self.problems = Problems()
        self._undecodable = False  # a line of the current record was not UTF-8
        try:
            self._raw = open(self.path, "rb")  # closed by close()
        except OSError as e:
            raise SimImportError(self.source, [], message=f"{path}: cannot read: "
                                                          f"{e.strerror}") from None
        try:
            head = self._raw.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
            if _looks_utf16(head):
                raise SimImportError(self.source, [], message=(
                    f"{self.source}: UTF-16 text; save it as UTF-8 CSV and import again"))
            # Bytes that are not UTF-8 come through as lone surrogates, so that one bad line
            # is reported as such and the rest are still checked.
            self._text = io.TextIOWrapper(self._raw, encoding="utf-8-sig",
                                          errors="surrogateescape", newline="")
            self._reader = csv.reader(self._lines())
            self._where = self._header()
        except BaseException:
            self._raw.close()
            raise

    def close(self) -> None:
        self._text.close()  # and the file under it

    def __enter__(self) -> SimReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _lines(self) -> Iterator[str]:
        number = 0
        while True:
            line = self._text.readline(MAX_LINE_LENGTH)
            if not line:
                return
            number += 1
            if len(line) == MAX_LINE_LENGTH and not line.endswith(("\n", "\r")):
                self.problems.add(number, f"line {number}: longer than {MAX_LINE_LENGTH} "
                                          "characters (not a SIM list?); read no further")
                return
            if not line.isascii() and not _is_text(line):
                self.problems.add(number, f"line {number}: not UTF-8 text")
                self._undecodable = True
            yield line

    def _header(self) -> dict[str, int]:
        try:
            header = next(self._reader, None)
        except csv.Error as e:
            raise SimImportError(self.source, [f"line 1: {e}"]) from None
        if self.problems:  # not UTF-8, or too long
            raise SimImportError(self.source, self.problems.shown, self.problems.count)
        if header is None:
            raise SimImportError(self.source,
                                 ["line 1: empty file (expected a header ICCID,plan,state)"])
        columns = [name.strip().lower() for name in header]
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise SimImportError(self.source, [
                f"line 1: missing column {', '.join(missing)} (found: "
                f"{', '.join(header) or 'nothing'})"])
        return {name: columns.index(name) for name in REQUIRED_COLUMNS}

    def __iter__(self) -> Iterator[SimRow]:
        reader = self._reader
        try:
            for record in reader:
                line = reader.line_num
                if self._undecodable:
                    self._undecodable = False  # reported by _lines
                    continue
                if not any(cell.strip() for cell in record):
                    continue
                row, problem = _check(line, record, self._where)
                if row is None:
                    self.problems.add(line, problem or f"line {line}: unreadable")
                    continue
                yield row
        except csv.Error as e:
            line = reader.line_num
            self.problems.add(line, f"line {line}: {e}")


def _looks_utf16(head: bytes) -> bool:
    if head.startswith(_UTF16_BOMS):
        return True
    sample = head[:len(head) // 2 * 2]
    if len(sample) < 4:
        return False
    evens, odds = sample[0::2], sample[1::2]
    return (not any(odds) and all(evens)) or (not any(evens) and all(odds))


def _is_text(line: str) -> bool:
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: bytes that were not UTF-8
        return False
    return True


def _check(line: int, record: list[str], where: dict[str, int]
           ) -> tuple[SimRow | None, str | None]:
    if len(record) <= max(where.values()):
        return None, f"line {line}: {len(record)} columns, expected at least " \
                     f"{max(where.values()) + 1}"
    iccid_text = record[where["iccid"]]
    plan = record[where["plan"]].strip()
    state = record[where["state"]].strip().lower()
    try:
        iccid = check_iccid(iccid_text)
    except IdentityError as e:
        return None, f"line {line}: {e}"
    if not plan:
        return None, f"line {line}: ICCID {iccid}: empty plan"
    if len(plan) > MAX_PLAN_LENGTH:
        return None, f"line {line}: ICCID {iccid}: plan longer than {MAX_PLAN_LENGTH} characters"
    if state not in IMPORT_STATES:
        return None, (f"line {line}: ICCID {iccid}: state {state!r} cannot be imported "
                      f"(expected one of: {', '.join(IMPORT_STATES)})")
    return SimRow(line, iccid, plan, state), None
