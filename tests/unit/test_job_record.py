"""The job record is defined once: states, rq statuses, hash fields, and the API's view of it."""

from __future__ import annotations

import dataclasses

from rq.job import JobStatus

from api.schemas import Job
from core.fleet import WorkerField, WorkerRecord, WorkerState, WorkerView
from core.jobs import TERMINAL, VIEW_FIELDS, JobField, JobRecord, JobState, NewJob


def test_every_state_shows_as_an_rq_status_that_rq_knows() -> None:
    for state in JobState:
        assert JobStatus(state.rq_status)
    assert {s for s in JobState if s.terminal} == TERMINAL


def test_the_hash_a_submit_writes_and_the_fields_a_read_fetches_are_job_fields() -> None:
    written = NewJob("j", "m", "1", "{}").fields(1.0)
    assert set(written) <= set(JobField)
    assert set(VIEW_FIELDS) <= set(JobField)
    # Every attribute of the record but its id is read back, under its field name.
    assert [f.name for f in dataclasses.fields(JobRecord)] == ["id", *VIEW_FIELDS]


def record(**overrides: object) -> JobRecord:
    values = {f: None for f in VIEW_FIELDS} | {JobField.MODEL: "m", JobField.STATE: "running",
                                               JobField.PRIORITY: "high", JobField.OUTPUT: "[1]"}
    values.update({JobField(k): v for k, v in overrides.items()})  # type: ignore[misc]
    return JobRecord.from_fields("j", [values[f] for f in VIEW_FIELDS])  # type: ignore[misc]


def test_a_record_reads_back_typed() -> None:
    job = record()
    assert job.state is JobState.RUNNING and not job.terminal and job.priority == "high"
    assert record(priority="bogus").priority == "normal"


def test_the_api_shows_exactly_what_the_record_makes_public() -> None:
    public = record(state="succeeded").public()
    assert set(Job.model_fields) == set(public)
    assert Job.model_validate(public).status is JobState.SUCCEEDED


def test_the_worker_record_round_trips_through_its_hash() -> None:
    rec = WorkerRecord("w1", "m", "1", 2.0, 3, "host", 42, "i-1", 5.0)
    h = rec.to_hash()
    assert set(h) <= set(WorkerField)
    view = WorkerView.from_hash(h, alive=True, queued=0, running=0)
    assert (view.id, view.weight, view.slots, view.pid, view.state) == ("w1", 2.0, 3, 42, WorkerState.READY)
