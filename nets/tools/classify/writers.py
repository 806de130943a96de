"""Result files of ``nets classify``, chosen by extension: ``.csv``, ``.jsonl``, ``.parquet``.

Rows are appended and flushed a batch at a time, so a killed run loses at most the batches it had in
flight, and ``resume`` reads back the paths already there. A kill can cut the last line in half:
resuming drops that partial line before appending. Parquet cannot be appended to and is unreadable
until its footer is written, so its rows go to a JSONL journal (``FILE.part.jsonl``) as batches
finish, and the Parquet file (earlier rows + the journal) is written, atomically, when the run ends;
a resumed run reads both.

CSV columns: ``path,label_1,index_1,prob_1,...,label_K,index_K,prob_K,error`` (empty cells where a
row has no result). Parquet has the same flat columns; JSONL holds the rows themselves.
"""

from __future__ import annotations

import csv
import io
import json
import os

from nets.errors import InputError

FORMATS = (".csv", ".jsonl", ".parquet")
ENC = dict(encoding="utf-8", errors="surrogateescape")     # paths that are not valid UTF-8 round-trip


def columns(topk: int) -> list[str]:
    return ["path"] + [f"{c}_{i}" for i in range(1, topk + 1) for c in ("label", "index", "prob")] + ["error"]


def flat(row: dict, topk: int) -> list:
    cells = [row["path"]]
    for i in range(topk):
        t = row["top"][i] if i < len(row["top"]) else None
        cells += [t["label"], t["index"], t["prob"]] if t else [None, None, None]
    return cells + [row["error"]]


def unflat(cells: dict, topk: int) -> dict:
    top = []
    for i in range(1, topk + 1):
        label, index, prob = cells.get(f"label_{i}"), cells.get(f"index_{i}"), cells.get(f"prob_{i}")
        if index is not None and index != "":
            top.append(dict(label=label, index=int(index), prob=float(prob)))
    return dict(path=cells["path"], top=top, error=cells.get("error") or None)


def format_of(path) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise InputError(f"output {os.fspath(path)!r}: unknown format {ext or '(no extension)'!r}; "
                         f"name it *.csv, *.jsonl or *.parquet")
    return ext


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise InputError("writing .parquet needs pyarrow: pip install pyarrow (or write .csv / .jsonl)") from None
    return pyarrow


def _complete_lines(path: str) -> str:
    """The file's text up to its last newline; a partial last line (a killed write) is cut off the file."""
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)
    return data[:end].decode(**ENC)


def _read_csv(path: str, text: str | None = None) -> tuple[list[dict], int]:
    text = _complete_lines(path) if text is None else text
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return [], 0
    topk = (len(header) - 2) // 3
    if header != columns(topk):
        raise InputError(f"{path!r} is not a results file of nets classify (its header is {header[:4]}...)")
    rows = []
    for n, cells in enumerate(reader, 2):
        if len(cells) != len(header):
            raise InputError(f"{path!r} line {n}: {len(cells)} cells, expected {len(header)}")
        rows.append(unflat(dict(zip(header, cells)), topk))
    return rows, topk


def _read_jsonl(path: str, text: str | None = None) -> list[dict]:
    text = _complete_lines(path) if text is None else text
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            rows.append(dict(path=r["path"], top=list(r.get("top") or []), error=r.get("error")))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path!r} line {n} is not a nets classify row: {e}") from None
    return rows


def _read_parquet(path: str) -> tuple[list[dict], int]:
    pa = _pyarrow()
    try:
        table = pa.parquet.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"cannot read {path!r} as Parquet: {e}") from None
    names = table.column_names
    topk = (len(names) - 2) // 3
    if names != columns(topk):
        raise InputError(f"{path!r} is not a results file of nets classify (its columns are {names[:4]}...)")
    return [unflat(r, topk) for r in table.to_pylist()], topk


def read_rows(path) -> list[dict]:
    """The rows of a results file, in file order (a Parquet run still in progress: its journal)."""
    path, ext = os.fspath(path), format_of(path)
    if ext == ".parquet":
        rows = _read_parquet(path)[0] if os.path.exists(path) else []
        journal = path + ".part.jsonl"
        return rows + (_read_jsonl(journal, open(journal, **ENC).read()) if os.path.exists(journal) else [])
    with open(path, **ENC) as f:
        text = f.read()
    return _read_csv(path, text)[0] if ext == ".csv" else _read_jsonl(path, text)


def _has_rows(path: str) -> bool:
    try:
        return bool(read_rows(path))
    except InputError:
        return True          # not ours, or damaged: never replaced without --overwrite


class Writer:
    """Appends rows to a results file. ``done``: path -> error (None if classified) of the rows an
    earlier run left in it (``resume``)."""

    def __init__(self, path, topk: int, resume: bool = False, overwrite: bool = False):
        self.path, self.topk, self.ext = os.fspath(path), int(topk), format_of(path)
        self.journal = self.path + ".part.jsonl" if self.ext == ".parquet" else None
        if self.ext == ".parquet":
            _pyarrow()
        existing = [p for p in (self.path, self.journal) if p and os.path.exists(p) and os.path.getsize(p) > 0]
        if existing and not (resume or overwrite) and not _has_rows(self.path):
            overwrite = True                 # a file without rows (a run that failed at once) is replaced
        if existing and not (resume or overwrite):
            raise InputError(f"{self.path!r} already exists: --resume continues it (skipping the images it has), "
                             "--overwrite replaces it")
        self.done: dict[str, str | None] = {}
        self.previous: list[dict] = []        # Parquet: earlier rows, rewritten with the new ones at the end
        if existing and resume:
            self._read_existing()
        elif overwrite:
            for p in existing:
                os.remove(p)
        target = self.journal or self.path
        self.rows_written = 0
        try:
            new = self.created = not os.path.exists(target) or os.path.getsize(target) == 0
            self.file = open(target, "a", newline="", **ENC)
        except OSError as e:
            raise InputError(f"cannot write {target!r}: {e.strerror or e}") from None
        if new and self.ext == ".csv":
            self._emit(lambda w: w.writerow(columns(self.topk)))

    def _read_existing(self):
        if self.ext == ".csv":
            rows, topk = _read_csv(self.path)
            if rows or topk:
                self._check_topk(topk)
        elif self.ext == ".jsonl":
            rows = _read_jsonl(self.path)
        else:
            if os.path.exists(self.path):
                self.previous, topk = _read_parquet(self.path)
                self._check_topk(topk)
            rows = self.previous + (_read_jsonl(self.journal) if os.path.exists(self.journal) else [])
        if any(len(r["top"]) > self.topk for r in rows):
            raise InputError(f"{self.path!r} holds more than {self.topk} classes per row: resume with its --topk")
        self.done = {r["path"]: r["error"] for r in rows}

    def _check_topk(self, topk: int):
        if topk != self.topk:
            raise InputError(f"{self.path!r} was written with --topk {topk}; resume it with --topk {topk}")

    def _emit(self, fill):
        buf = io.StringIO()
        fill(csv.writer(buf, lineterminator="\n"))
        self.file.write(buf.getvalue())
        self.file.flush()

    def write(self, rows: list[dict]):
        self.rows_written += len(rows)
        if self.ext == ".csv":
            self._emit(lambda w: w.writerows(["" if c is None else c for c in flat(r, self.topk)] for r in rows))
        else:
            self.file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            self.file.flush()

    def close(self, complete: bool = True):
        """Close the file; Parquet: when ``complete``, write the Parquet file and drop the journal
        (an interrupted run keeps its journal for ``resume``). A file this run created and wrote no row
        to (it failed at once: no cluster, a model the workers could not load) is removed."""
        self.file.close()
        if self.created and not self.rows_written and not complete:
            os.remove(self.journal or self.path)
            return
        if self.ext == ".parquet" and complete:
            pa = _pyarrow()
            rows = self.previous + _read_jsonl(self.journal)
            names = columns(self.topk)
            types = dict(path=pa.string(), error=pa.string())
            for i in range(1, self.topk + 1):
                types.update({f"label_{i}": pa.string(), f"index_{i}": pa.int64(), f"prob_{i}": pa.float64()})
            data = list(zip(*(flat(r, self.topk) for r in rows))) or [[] for _ in names]
            table = pa.table({n: pa.array(list(col), type=types[n]) for n, col in zip(names, data)})
            tmp = self.path + ".tmp"
            pa.parquet.write_table(table, tmp)
            os.replace(tmp, self.path)
            os.remove(self.journal)
