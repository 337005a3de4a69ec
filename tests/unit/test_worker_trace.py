"""Processing spans join the trace of the request that created the item."""

import asyncio

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from atlas.engine.messages import Done, Failed, Job
from atlas.engine.worker import process
from atlas.pipeline import default_pipeline
from atlas.pipeline.base import Pipeline

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def run(job_content: str) -> tuple[tuple[object, ...], list[object]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    job = Job(
        id="I1",
        kind="document",
        payload={"content": job_content},
        attempt=1,
        trace_context=f"00-{TRACE_ID}-{PARENT}-01",
    )
    message = asyncio.run(process(default_pipeline(), job, provider.get_tracer("t")))
    return message, list(exporter.get_finished_spans())


def test_item_and_stage_spans_continue_the_stored_trace() -> None:
    message, spans = run("hello")
    assert isinstance(message, Done)
    by_name = {s.name: s for s in spans}  # type: ignore[attr-defined]
    assert set(by_name) == {"atlas.item", "atlas.stage.decode", "atlas.stage.normalise"}
    item = by_name["atlas.item"]
    assert format(item.context.trace_id, "032x") == TRACE_ID
    assert format(item.parent.span_id, "016x") == PARENT
    assert by_name["atlas.stage.decode"].parent.span_id == item.context.span_id
    assert item.attributes["atlas.item.id"] == "I1"


def test_a_failing_stage_marks_its_span_as_an_error_and_reports_the_stage() -> None:
    message, spans = run("   ")
    assert isinstance(message, Failed) and message.error.stage == "normalise" and message.permanent
    failed = next(s for s in spans if s.name == "atlas.stage.normalise")  # type: ignore[attr-defined]
    assert failed.status.status_code.name == "ERROR"


class _SeesTrace:
    """A stage that notes the trace ids current while it runs (what its log lines carry)."""

    name = "sees"
    kinds = ("document",)

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def run(self, ctx: object) -> None:
        span = trace.get_current_span().get_span_context()
        self.seen.append((format(span.trace_id, "032x"), format(span.span_id, "016x")))


def test_with_no_exporter_a_stage_still_runs_in_the_stored_trace() -> None:
    # No exporter: workers keep OpenTelemetry's no-op tracer and make no span per stage; a
    # stage's logs must still carry the request's trace (and the span it came from).
    stage = _SeesTrace()
    pipeline = default_pipeline()
    job = Job(
        id="I2",
        kind="document",
        payload={"content": "hello"},
        attempt=1,
        trace_context=f"00-{TRACE_ID}-{PARENT}-01",
    )
    message = asyncio.run(process(Pipeline((*pipeline.stages, stage)), job, trace.NoOpTracer()))
    assert isinstance(message, Done)
    assert stage.seen == [(TRACE_ID, PARENT)]
