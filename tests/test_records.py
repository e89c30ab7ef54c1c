"""Operation records as JSONL (reconciler.records)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from reconciler.models import OperationRecord
from reconciler.records import RecordWriter, new_run_id, read_records

SECRET = "whsec-Distinctive-0b5e1d-RECORDS"
SPEC_FIELDS = [
    "timestamp",
    "run_id",
    "operation",
    "account",
    "form_id",
    "tag",
    "webhook_id",
    "url",
    "success",
    "error",
    "attempts",
    "duration_ms",
    "note",  # ours, beyond SPEC section 5: what a revert could not restore, or a 404 on delete
]


def record(
    tag: str = "onboarding-intake", *, run_id: str = "run-1", **changes: object
) -> OperationRecord:
    fields: dict[str, object] = {
        "timestamp": "2026-01-02T03:04:05.678Z",
        "run_id": run_id,
        "operation": "create",
        "account": "default",
        "form_id": "u6nXL7",
        "tag": tag,
        "webhook_id": "01HWEBHOOK",
        "url": "https://hooks.example.com/typeform",
        "success": True,
        "error": None,
        "attempts": 1,
        "duration_ms": 42,
    }
    fields.update(changes)
    return OperationRecord(**fields)  # type: ignore[arg-type]


def test_a_writer_that_writes_nothing_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / ".reconcile" / "records.jsonl"
    with RecordWriter(path):
        pass
    assert not path.exists()
    assert not path.parent.exists()


def test_each_record_is_one_json_line_with_the_spec_fields_in_order(tmp_path: Path) -> None:
    path = tmp_path / ".reconcile" / "records.jsonl"
    with RecordWriter(path) as writer:
        writer.write(record("a"))
        writer.write(record("b", operation="delete", success=False, error="SERVER_ERROR: boom"))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert list(first) == SPEC_FIELDS
    assert first == record("a").to_json()
    assert second["operation"] == "delete"
    assert second["success"] is False
    assert second["error"] == "SERVER_ERROR: boom"


def test_two_writers_append_to_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as first_run:
        first_run.write(record("a", run_id="run-1"))
        first_run.write(record("b", run_id="run-1"))
    with RecordWriter(path) as second_run:
        second_run.write(record("c", run_id="run-2"))
    raw = path.read_text(encoding="utf-8")
    assert raw.count("\n") == 3
    assert raw.endswith("\n")
    assert [(r["run_id"], r["tag"]) for r in read_records(path)] == [
        ("run-1", "a"),
        ("run-1", "b"),
        ("run-2", "c"),
    ]


def test_a_record_is_readable_as_soon_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as writer:
        writer.write(record("a"))
        # No buffering in the process: a crash after this point cannot lose the record.
        assert [r["tag"] for r in read_records(path)] == ["a"]


def test_concurrent_writers_never_interleave_within_a_line(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    long_url = "https://hooks.example.com/" + "x" * 3000
    with RecordWriter(path) as shared, RecordWriter(path) as other:

        def burst(writer: RecordWriter, prefix: str) -> None:
            for i in range(10):
                writer.write(record(f"{prefix}{i}", url=long_url))

        threads = [
            threading.Thread(target=burst, args=(shared, "s")),
            threading.Thread(target=burst, args=(shared, "t")),
            threading.Thread(target=burst, args=(other, "o")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    tags = sorted(r["tag"] for r in read_records(path))
    assert tags == sorted(f"{p}{i}" for p in "sto" for i in range(10))


def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(record("a").to_json()) + "\n" + '{"timestamp": "2026-01-0')
    with RecordWriter(path) as writer:
        writer.write(record("b"))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert json.loads(lines[2])["tag"] == "b"
    # The torn line is the write a crash left unconfirmed: the reader skips it, nothing else.
    assert [r["tag"] for r in read_records(path)] == ["a", "b"]


def test_a_complete_line_that_is_not_json_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"tag": "a"}\n{"tag": oops}\n')
    with pytest.raises(ValueError, match=r"records\.jsonl:2: not a JSON record"):
        read_records(path)


def test_read_records_skips_blank_lines_and_refuses_non_objects(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"tag": "a"}\n\n{"tag": "b"}\n')
    assert read_records(path) == [{"tag": "a"}, {"tag": "b"}]
    path.write_text('{"tag": "a"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"records\.jsonl:2: not a JSON object"):
        read_records(path)


def test_writing_after_close_is_an_error(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "records.jsonl")
    writer.write(record("a"))
    writer.close()
    writer.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="already closed"):
        writer.write(record("b"))
    assert len(read_records(tmp_path / "records.jsonl")) == 1


def test_run_ids_are_ulids_that_sort_by_start_time() -> None:
    early = new_run_id(clock=lambda: 1_700_000_000.000)
    later = new_run_id(clock=lambda: 1_700_000_000.001)
    much_later = new_run_id(clock=lambda: 1_800_000_000.0)
    for run_id in (early, later, much_later):
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", run_id)
    assert early < later < much_later


def test_two_run_ids_of_the_same_millisecond_differ() -> None:
    ids = {new_run_id(clock=lambda: 1_700_000_000.0) for _ in range(100)}
    assert len(ids) == 100
    assert len({run_id[:10] for run_id in ids}) == 1  # the same 48-bit time prefix
