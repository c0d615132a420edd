"""Prometheus metrics for the scheduler, in a registry of its own (one per app, none global).

Counters and histograms are updated as things happen; queue depth, memory and residency are
gauges read from the scheduler at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from loom.sdk.protocols import TextChunk
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from ..workers import NodeInfo
    from .state import DeviceState

#: Distinct principals the per-principal metrics name; the rest are counted together as "other",
#: so a flood of JWT subjects cannot grow /metrics without bound.
MAX_PRINCIPALS = 32
OTHER = "other"
_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class _StateCollector:
    def __init__(self, devices: Mapping[str, DeviceState], nodes: Callable[[], Mapping[str, NodeInfo]]) -> None:
        self.devices = devices
        self.nodes = nodes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "loom_queue_depth",
            "Work items waiting, by device, model and priority",
            labels=["device", "model", "priority"],
        )
        running = GaugeMetricFamily("loom_running_items", "Work items running", labels=["device", "model"])
        memory = GaugeMetricFamily(
            "loom_device_memory_bytes",
            "Device memory: budget, used (ledger), reserved, free",
            labels=["device", "kind"],
        )
        resident = GaugeMetricFamily("loom_resident_models", "Models resident on the device", labels=["device"])
        footprint = GaugeMetricFamily(
            "loom_model_memory_bytes", "What each resident model holds", labels=["device", "model"]
        )
        for name, dev in self.devices.items():
            for model, by_priority in dev.queue.depth().items():
                for priority, n in by_priority.items():
                    depth.add_metric([name, model, priority], n)
            for model, n in dev.busy.items():
                if n:
                    running.add_metric([name, model], n)
            ledger = dev.ledger
            if ledger.budget is not None:
                memory.add_metric([name, "budget"], ledger.budget)
                memory.add_metric([name, "free"], max(0, ledger.budget - ledger.held))
            memory.add_metric([name, "used"], ledger.used)
            memory.add_metric([name, "reserved"], sum(ledger.reserved.values()))
            resident.add_metric([name], len(ledger.resident))
            for model, r in ledger.resident.items():
                footprint.add_metric([name, model], r.footprint)
        yield from (depth, running, memory, resident, footprint)
        nodes = self.nodes()
        if nodes:
            node = GaugeMetricFamily(
                "loom_cluster_node",
                "Nodes of the cluster (1; usable 0 when Loom cannot place models there)",
                labels=["node", "address", "usable"],
            )
            gpus = GaugeMetricFamily("loom_cluster_node_gpus", "GPUs measured on each node", labels=["node"])
            for name, info in nodes.items():
                node.add_metric([name, info.address, "0" if info.error else "1"], 1)
                gpus.add_metric([name], len(info.gpus))
            yield from (node, gpus)


class BoundedLabels:
    """A principal as a metric label: the first ``limit`` distinct principals seen keep their
    own name (the configured ones come first when ``known`` names them); any later one is
    ``other``."""

    def __init__(self, limit: int = MAX_PRINCIPALS, known: tuple[str, ...] = ()) -> None:
        self.limit = limit
        self._named: set[str] = set(known)

    def __call__(self, principal: str) -> str:
        named = self._named
        if principal in named:
            return principal
        if len(named) < self.limit:
            named.add(principal)
            return principal
        return OTHER


def _memo_labels(metric):
    """``metric`` with ``labels()`` remembered per label values: prometheus_client takes a lock
    and builds a tuple of strings on every call, and the per-request metrics ask for the same few
    children each time. (Loom never removes a child, so a remembered one stays current.)"""
    children: dict[tuple, object] = {}
    labels = metric.labels

    def memo(*values):
        child = children.get(values)
        if child is None:
            child = children[values] = labels(*values)
        return child

    metric.labels = memo
    return metric


class SchedulerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, devices: Mapping[str, DeviceState], nodes: Callable[[], Mapping[str, NodeInfo]] = dict) -> None:
        """``devices`` and ``nodes`` (a cluster executor's, by name) are read at scrape time."""
        r = self.registry = CollectorRegistry()
        # Updated for every request: wait, run, items, tokens.
        self.wait = _memo_labels(
            Histogram(
                "loom_queue_wait_seconds",
                "Time from queued to started",
                ["device", "priority"],
                buckets=_WAIT_BUCKETS,
                registry=r,
            )
        )
        self.run = _memo_labels(
            Histogram("loom_run_seconds", "Time a work item ran", ["model"], buckets=_RUN_BUCKETS, registry=r)
        )
        self.load_seconds = Histogram(
            "loom_model_load_seconds", "Time a model took to load", ["model"], buckets=_RUN_BUCKETS, registry=r
        )
        self.loads = Counter("loom_model_loads", "Model loads", ["device", "model"], registry=r)
        self.evictions = Counter("loom_model_evictions", "Models evicted to make room", ["device", "model"], registry=r)
        self.unloads = Counter(
            "loom_model_unloads",
            "Models unloaded (evicted, keep-alive, admin)",
            ["device", "model", "reason"],
            registry=r,
        )
        self.items = _memo_labels(
            Counter("loom_work_items", "Work items ended, by outcome", ["model", "outcome"], registry=r)
        )
        self.rejected = Counter("loom_work_rejected", "Work refused at admission", ["model", "reason"], registry=r)
        self.oom = Counter("loom_out_of_memory", "Out-of-memory errors seen", ["device", "model", "stage"], registry=r)
        self.tokens = _memo_labels(Counter("loom_tokens", "Completion tokens produced", ["model"], registry=r))
        self.prompt_tokens = _memo_labels(
            Counter(
                "loom_prompt_tokens",
                "Prompt tokens, by where their state came from: evaluated by the model, or served by a "
                "prompt cache (providers that do not report a cache count every token as evaluated)",
                ["model", "source"],
                registry=r,
            )
        )
        self.images = Counter("loom_images", "Images produced", ["model"], registry=r)
        # Per principal (the caller's key or token; a job's owner), its label set bounded.
        self.principal = BoundedLabels()
        self.principal_requests = _memo_labels(
            Counter(
                "loom_principal_requests",
                "Model calls queued, by principal (a request with n choices or n images may make several)",
                ["principal"],
                registry=r,
            )
        )
        self.principal_tokens = _memo_labels(
            Counter(
                "loom_principal_tokens",
                "Tokens by principal: prompt (evaluated or cached) and completion",
                ["principal", "kind"],
                registry=r,
            )
        )
        self.principal_wait = _memo_labels(
            Counter(
                "loom_principal_queue_wait_seconds",
                "Seconds the principal's model calls waited in the queue, summed",
                ["principal"],
                registry=r,
            )
        )
        r.register(_StateCollector(devices, nodes))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def stream_counter(self, model: str, principal: str | None = None) -> Callable[[object], None]:
        """Counts one stream's chunks as they come: a text chunk is a token at once (a dashboard
        reading the counter sees a long pipeline stream move, not a jump at its end), and the
        final chunk's ``completion_tokens`` makes the total exact."""
        tokens = self.tokens.labels(model)
        seen = 0

        def count(chunk: object) -> None:
            nonlocal seen
            final = getattr(chunk, "completion_tokens", None)
            if isinstance(final, int):
                self.count_prompt(model, chunk)
                if principal is not None:
                    self.count_principal(principal, chunk)
                if final > seen:
                    tokens.inc(final - seen)
                seen = max(seen, final)
            elif getattr(chunk, "text", None):
                seen += 1
                tokens.inc(1)
            else:
                self.count_output(model, chunk, principal)

        return count

    def count_prompt(self, model: str, value: object) -> None:
        """A final text chunk's prompt tokens, as served by a prompt cache or evaluated."""
        prompt = getattr(value, "prompt_tokens", None)
        if isinstance(prompt, int) and prompt > 0 and isinstance(value, TextChunk):
            cached = min(prompt, value.cached_tokens or 0)
            if cached:
                self.prompt_tokens.labels(model, "cached").inc(cached)
            if prompt > cached:
                self.prompt_tokens.labels(model, "evaluated").inc(prompt - cached)

    def count_principal(self, principal: str, value: object) -> None:
        """A final text chunk's (or embeddings') tokens, for its principal."""
        prompt = getattr(value, "prompt_tokens", None)
        if isinstance(prompt, int) and prompt > 0:
            self.principal_tokens.labels(principal, "prompt").inc(prompt)
        completion = getattr(value, "completion_tokens", None)
        if isinstance(completion, int) and completion > 0:
            self.principal_tokens.labels(principal, "completion").inc(completion)

    def count_output(self, model: str, value: object, principal: str | None = None) -> None:
        """Tokens from text chunks and images from lists of PNG bytes, whatever call made them."""
        tokens = getattr(value, "completion_tokens", None)
        self.count_prompt(model, value)
        if principal is not None:
            self.count_principal(principal, value)
        if isinstance(tokens, int) and tokens > 0:
            self.tokens.labels(model).inc(tokens)
        elif isinstance(value, list) and value:
            if all(isinstance(v, (bytes, bytearray)) for v in value):
                self.images.labels(model).inc(len(value))
            else:
                for v in value:
                    self.count_output(model, v, principal)
