"""One worker thread owns the model; text requests that wait together are decoded as one batch.

Routes submit jobs from the event loop. The worker takes the first waiting job, keeps taking
whatever else is waiting (up to ``max_batch`` text jobs) while it encodes their images, then
runs every text job through one ``Engine.generate_stream`` call, routing each row's tokens to
its request. Other work (detect, point) runs one at a time on the same thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..generation.engine import TextRequest
from ..generation.reasoning import grounded_text
from ..generation.sampling import SamplingSettings
from ..generation.streaming import TextStreamer
from ..generation.structured import IncompleteJsonError, check_complete
from .errors import QueueFullError, WorkerDownError
from .metrics import Metrics

logger = logging.getLogger("moonlet.server")

_STOP = object()
CANCELLED = "cancelled"  # the finish reason of a row stopped because its client went away


class EventChannel:
    """Carries events from the worker thread to one coroutine on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()

    def put(self, kind: str, value: Any = None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    async def get(self) -> tuple[str, Any]:
        return await self.queue.get()


@dataclass
class Figures:
    """Per-request counts and timings (``time.perf_counter`` seconds)."""

    created: float = field(default_factory=time.perf_counter)
    started: float | None = None  # the worker picked the job up
    first_token: float | None = None
    finished: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    batch_size: int = 1

    def as_dict(self) -> dict[str, Any]:
        def ms(a, b):
            return round((b - a) * 1000, 3) if a is not None and b is not None else None

        decode_s = (self.finished - self.first_token) if self.first_token and self.finished else None
        rate = None
        if decode_s and self.output_tokens > 1:
            rate = round((self.output_tokens - 1) / decode_s, 2)
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "queue_ms": ms(self.created, self.started),
            "ttft_ms": ms(self.created, self.first_token),
            "prefill_ms": ms(self.started, self.first_token),
            "decode_ms": ms(self.first_token, self.finished),
            "total_ms": ms(self.created, self.finished),
            "tokens_per_second": rate,
            "batch_size": self.batch_size,
        }


@dataclass
class TextResult:
    text: str
    finish_reason: str  # the engine's "stop" or "length"; CANCELLED once nobody waits for it
    figures: Figures
    reasoning: dict | None = None  # {"text", "grounding"} of a query with reasoning


@dataclass(frozen=True)
class TextOptions:
    """A query's extras: a LoRA variant's name, validated spatial refs, grounded reasoning, a JSON schema."""

    variant: str | None = None
    refs: tuple = ()
    reasoning: bool = False
    json_schema: dict | None = None  # the reply must be JSON matching it (structured output)


@dataclass
class TextJob:
    """A caption or query: prompt ids, sampling settings, an optional image.

    Events on ``channel``: ("started", None) once the job is accepted into a batch, with reasoning
    ("reasoning", {"text", "grounding"}) once it is complete, ("text", piece) while streaming, then
    ("done", TextResult) or ("error", exception).
    """

    prompt: list[int]
    settings: SamplingSettings
    channel: EventChannel
    image: Any = None
    stream: bool = False
    options: TextOptions = field(default_factory=TextOptions)
    figures: Figures = field(default_factory=Figures)
    cancelled: bool = False
    timeout_s: float | None = None  # the request gives up this long after it arrived

    @property
    def deadline(self) -> float | None:
        """``time.perf_counter()`` time after which the request gives up."""
        return None if self.timeout_s is None else self.figures.created + self.timeout_s


@dataclass
class CallJob:
    fn: Callable[[Any], Any]
    future: concurrent.futures.Future


@dataclass
class _Row:
    job: TextJob
    request: TextRequest
    streamer: TextStreamer | None
    ids: list[int] = field(default_factory=list)
    closed: bool = False
    thoughts: list[tuple[int, float | None]] = field(default_factory=list)  # reasoning tokens, coordinates
    reasoning: dict | None = None


class Batcher:
    """The model's only user. ``submit_text`` and ``call`` are safe from any thread."""

    def __init__(
        self,
        model,
        max_batch: int = 8,
        max_queue: int = 256,
        batch_window_s: float = 0.005,
        metrics: Metrics | None = None,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.model = model
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self.metrics = metrics
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="moonlet-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand, then fail whatever is still queued."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        self._thread = None
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(job, TextJob):
                job.channel.put("error", WorkerDownError("the server is shutting down"))
            elif isinstance(job, CallJob) and job.future.set_running_or_notify_cancel():
                job.future.set_exception(WorkerDownError("the server is shutting down"))

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    # --- submission -----------------------------------------------------------------------

    def _put(self, job) -> None:
        if not self.alive:
            raise WorkerDownError("the model worker is not running")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError("queue full") from None

    def submit_text(
        self,
        prompt: list[int],
        settings: SamplingSettings,
        image=None,
        stream: bool = False,
        arrived: float | None = None,
        options: TextOptions | None = None,
    ) -> TextJob:
        """Queue a text job; call from the event loop (its events come back there).

        ``arrived``: when the request came in (``time.perf_counter``), for its figures.
        """
        loop = asyncio.get_running_loop()
        job = TextJob(list(prompt), settings, EventChannel(loop), image, stream, options or TextOptions())
        if arrived is not None:
            job.figures.created = arrived
        self._put(job)
        return job

    def call(self, fn: Callable[[Any], Any]) -> concurrent.futures.Future:
        """Run ``fn(model)`` on the worker thread, between batches."""
        job = CallJob(fn, concurrent.futures.Future())
        self._put(job)
        return job.future

    async def run(self, fn: Callable[[Any], Any]) -> Any:
        return await asyncio.wrap_future(self.call(fn))

    # --- the worker -----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            try:
                if not self._serve(job):
                    return
            except Exception:  # never let the worker die
                logger.exception("worker iteration failed")

    def _next_waiting(self, deadline: float):
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            return self._queue.get(timeout=remaining)
        except queue.Empty:
            return None

    def _serve(self, first) -> bool:
        """Collect, prepare and run one batch; False once asked to stop."""
        rows: list[_Row] = []
        keep_running = True
        job = first
        deadline = time.monotonic() + self.batch_window_s
        while job is not None:
            if job is _STOP:
                keep_running = False
                break
            if isinstance(job, CallJob):
                self._run_call(job)
            else:
                row = self._prepare(job)
                if row is not None:
                    rows.append(row)
            if len(rows) >= self.max_batch:
                break
            job = self._next_waiting(deadline)
        if rows:  # rows of different variants, or none, decode together: each gets its own update
            self._generate(rows)
        return keep_running

    def _run_call(self, job: CallJob) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.fn(self.model))
        except BaseException as exc:  # handed to the caller
            job.future.set_exception(exc)

    def _prepare(self, job: TextJob) -> _Row | None:
        """Encode the image (prefix cache first), check the prompt fits; None if the job failed."""
        if job.cancelled:
            return None
        job.figures.started = time.perf_counter()
        model = self.model
        options = job.options
        try:
            variant = {}  # the model's calls are given only what the job uses
            if options.variant:
                variant = {"adapter": model.variants.get(options.variant)}
            if job.image is None:
                prefix = model.text_prefix(**variant)
            else:
                prefix = model.encode_image(job.image, {"variant": options.variant} if variant else None)
            model.engine.check_fits(prefix.length, len(job.prompt))
            request = model.text_request(prefix, job.prompt, job.settings, **variant)
            if options.refs:
                request.slots = model.spatial_slots(options.refs)
            if options.reasoning:
                request.reasoning = model.reasoning_spec()
            if options.json_schema is not None:
                request.constraint = model.constraint({"json_schema": options.json_schema})
        except Exception as exc:
            job.channel.put("error", exc)
            return None
        job.figures.input_tokens = prefix.length + len(job.prompt)
        streamer = TextStreamer(model.tokenizer.decode) if job.stream else None
        job.channel.put("started")
        return _Row(job, request, streamer)

    def _generate(self, rows: list[_Row]) -> None:
        for row in rows:
            row.job.figures.batch_size = len(rows)
        if self.metrics is not None:
            self.metrics.batch_run(len(rows))
        stream = self.model.engine.generate_stream([row.request for row in rows])
        try:
            for step in stream:
                now = time.perf_counter()
                thoughts = step.reasoning or [None] * len(rows)
                for row, token, reason, thought in zip(rows, step.tokens, step.finish_reasons, thoughts):
                    if row.closed:
                        continue
                    if thought is not None:
                        self._think(row, thought, now)
                    if token is not None:
                        self._add(row, token, now)
                    if reason is not None:
                        self._finish(row, reason, now)
                if all(row.closed or row.job.cancelled for row in rows):
                    break
        except Exception as exc:
            logger.exception("batch of %d failed", len(rows))
            for row in rows:
                if not row.closed:
                    row.closed = True
                    row.job.channel.put("error", exc)
            return
        finally:
            stream.close()
        now = time.perf_counter()
        for row in rows:
            if not row.closed:  # every open row's client has gone
                self._finish(row, CANCELLED, now)

    def _think(self, row: _Row, thought, now: float) -> None:
        if not row.thoughts and row.job.figures.first_token is None:
            row.job.figures.first_token = now
        if thought.token is not None:
            row.thoughts.append((thought.token, thought.coordinate))
        if thought.finished:
            tokens, coordinates = zip(*row.thoughts) if row.thoughts else ((), ())
            row.reasoning = grounded_text(tokens, coordinates, row.request.reasoning, self.model.tokenizer.decode)
            row.job.channel.put("reasoning", row.reasoning)

    def _add(self, row: _Row, token: int, now: float) -> None:
        if row.job.figures.first_token is None:
            row.job.figures.first_token = now
        row.ids.append(token)
        if row.streamer is not None and not row.job.cancelled:
            piece = row.streamer.push(token)
            if piece:
                row.job.channel.put("text", piece)

    def _finish(self, row: _Row, reason: str, now: float) -> None:
        row.closed = True
        job, figures = row.job, row.job.figures
        figures.finished = now
        figures.output_tokens = len(row.ids) + len(row.thoughts)
        if row.streamer is not None and not job.cancelled:
            rest = row.streamer.finish()
            if rest:
                job.channel.put("text", rest)
        text = self.model.tokenizer.decode(row.ids)
        if reason != CANCELLED:
            try:
                check_complete(row.request.constraint, row.request.settings.max_tokens)
            except IncompleteJsonError as exc:
                job.channel.put("error", exc)
                return
        if self.metrics is not None:
            ttft = figures.first_token - figures.created if figures.first_token else None
            self.metrics.text_finished(figures.input_tokens, figures.output_tokens, ttft)
        job.channel.put("done", TextResult(text, reason, figures, row.reasoning))
