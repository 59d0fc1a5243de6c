"""One validated settings object, read from ALIGNSERVE_* environment variables.

Every field's description says what it trades off; invalid settings stop start-up with a
message naming the variable.
"""

from __future__ import annotations

import os
from enum import StrEnum

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.manifest import Task

PREFIX = "ALIGNSERVE_"
# The one table of model roles: each is served from the store tag in ALIGNSERVE_<ROLE>_MODEL
# (a field below) and must be a model of its task.
ROLES: dict[str, Task] = {"reward": Task.reward, "moderation": Task.multilabel,
                          "intent": Task.multiclass}
# Read elsewhere: the data directory by training, the model store by `python -m service`.
OTHER_VARIABLES = {"ALIGNSERVE_DATA_DIR", "ALIGNSERVE_MODEL_STORE"}


class Provider(StrEnum):
    auto = "auto"  # CUDA when onnxruntime-gpu sees a GPU, else CPU
    cpu = "cpu"
    cuda = "cuda"  # refuse to start rather than fall back to CPU silently


class Graph(StrEnum):
    auto = "auto"  # int8 on CPU when the artifact has it, fp16 on CUDA, else fp32
    fp32 = "fp32"
    int8 = "int8"
    fp16 = "fp16"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid")

    reward_model: str = Field("reward", description="Store tag of the reward model: a name "
                              "(latest version) or name:version; empty to serve none.")
    moderation_model: str = Field("moderation", description="Store tag of the moderation "
                                  "classifier; empty to serve none.")
    intent_model: str = Field("intent", description="Store tag of the intent classifier "
                              "(`make serve` builds a banking77 one); empty to serve none.")
    provider: Provider = Field(Provider.auto, description="Execution provider; cuda refuses to "
                               "report ready if onnxruntime fell back to the CPU.")
    graph: Graph = Field(Graph.auto, description="Which graph of the artifact to run. int8 is "
                         "~1.5x faster on AVX2 CPUs and was accepted at export only if accuracy "
                         "held; fp16 is for GPUs.")
    lanes: int | None = Field(None, ge=1, le=64, description="Engine calls run side by side "
                              "per model, each on its share of the cores. Default: 2 for an "
                              "int8 graph on a CPU with at least 2 cores (int8's short matrix "
                              "products cannot keep every core busy inside one call), else 1.")
    threads: int | None = Field(None, ge=1, le=256, description="onnxruntime intra-op threads "
                                "per lane (default: the usable cores divided among the lanes; "
                                "onnxruntime's own default on CUDA).")
    lone_call_threads: int | None = Field(None, ge=0, le=256, description="onnxruntime "
                                          "intra-op threads of an engine call made while no "
                                          "other is in flight, on a second session over the "
                                          "same graph (about 25 MB per model). Default: every "
                                          "usable core when lanes divide them (a lone int8 "
                                          "item 1.6 times as fast on 2 cores); 0: every call on "
                                          "its lane's threads.")
    cpu_arena: bool = Field(True, description="onnxruntime's CPU memory arena: keeps the "
                            "largest batch's buffers for reuse. Off, a replica returns them "
                            "after each batch (less resident memory; see bench/memory.py).")
    max_batch_size: int = Field(64, ge=1, le=4096, description="Most items merged from "
                                "concurrent requests into one engine batch. On a GPU bigger "
                                "batches raise throughput; on a CPU they do not.")
    max_latency_ms: float | None = Field(None, ge=0, le=1000, description="How long an idle "
                                         "engine holds a batch open for more requests. Default: "
                                         "0 on a CPU (batching gains nothing there, waiting only "
                                         "adds latency), 5 on CUDA (batch size is everything).")
    max_queued_items: int = Field(512, ge=1, le=1_000_000, description="Most items waiting for "
                                  "or in inference. A request that would go past it gets 429 "
                                  "with Retry-After at once instead of a long wait: about 10 s "
                                  "of work for fp32 MiniLM on 2 CPU cores, far less on a GPU.")
    max_queue_wait_ms: float = Field(5000, ge=1, le=600_000, description="Admission by "
                                     "expected wait: a request is admitted only when the "
                                     "queue ahead and its own items would be through the engine "
                                     "within this (a request's X-Deadline-Ms can ask for less); "
                                     "the rest get 429 at once with an honest Retry-After. 5 s "
                                     "admits four clients' 32-pair requests at fp32 MiniLM on 2 "
                                     "CPU cores (about 2.6 s of work); 2 s refused most of them.")
    max_batch_tokens: int | None = Field(
        None, ge=1, le=1_048_576, description="Padded tokens per engine call (items are sorted "
        "by length and cut into batches within it; an item longer runs alone); unset: 64 for "
        "a one-thread CPU lane (nearly every item alone), 512 for a CPU call on several "
        "threads, 8192 on CUDA (service/runtime.py, BATCH_TOKENS).")
    max_items: int = Field(64, ge=1, le=4096, description="Most items (or pairs) in one request.")
    max_chars: int = Field(32_000, ge=16, le=1_000_000, description="Most characters in one "
                           "response, candidate or prompt (all its messages together); longer "
                           "input is refused with 413 before tokenisation.")
    max_request_bytes: int = Field(8 << 20, ge=1024, le=1 << 30, description="Largest request "
                                   "body; a bigger one is refused with 413 before parsing.")
    ensemble_penalty: float | None = Field(None, ge=0, le=100, description="λ in an ensemble "
                                           "reward model's conservative reward, mean - λ·std "
                                           "of its members (default: the manifest's).")
    moderation_min_precision: str = Field("", description="The moderation operating point: "
                                          "per category the lowest threshold whose validation "
                                          "precision reaches this, either one value for every "
                                          "category ('0.9') or per category ('hate=0.9,"
                                          "offensive=0.8'); empty: each category's threshold "
                                          "from training (best F1). Requests may ask for "
                                          "their own (min_precision).")
    max_windows: int = Field(256, ge=1, le=100_000, description="Most model-length windows "
                             "one moderation request may need: a text longer than the model's "
                             "window is read whole in overlapping windows, each an item in the "
                             "queue (256 windows of 96 tokens are about 16,000 tokens).")
    max_rl_queries: int = Field(1024, ge=1, le=1_000_000, description="Most queries in one RL "
                                "trainer request (/v1/reward/openrlhf); they are scored "
                                "ALIGNSERVE_MAX_ITEMS at a time.")
    max_candidates: int = Field(64, ge=2, le=1024, description="Most candidates in one rank "
                                "request.")
    api_key: SecretStr | None = Field(None, description="When set, /v1/* needs 'Authorization: "
                                      "Bearer <key>'; health and metrics stay open.")
    feedback_db: str = Field("feedback.sqlite3", description="SQLite file that stores feedback "
                             "(POST /v1/feedback), relative to the working directory; on "
                             "Kubernetes a path on a volume. Empty: feedback is not accepted.")
    feedback_dsn: SecretStr | None = Field(None, description="PostgreSQL DSN for the feedback "
                                           "store, for several replicas; when set, it is used "
                                           "instead of ALIGNSERVE_FEEDBACK_DB.")
    feedback_retention_days: float | None = Field(None, gt=0, le=36_500, description="Erase "
                                                  "feedback older than this many days (checked "
                                                  "at start and then hourly); unset: keep it.")
    max_feedback_records: int = Field(256, ge=1, le=10_000, description="Most records in one "
                                      "POST /v1/feedback.")
    switch_interval_ms: float = Field(0.5, ge=0.05, le=100, description="How long a Python "
                                      "thread holds the interpreter while another waits for "
                                      "it (sys.setswitchinterval; CPython's default is 5 ms). "
                                      "An engine lane needs it back after every onnxruntime "
                                      "call; while the event loop is busy (a flood of "
                                      "requests), each wait was up to 5 ms, and a batch of "
                                      "single-item calls ran up to 4x slower (docs/"
                                      "measurements.md).")
    tracing: bool = Field(False, description="BentoML's OpenTelemetry span for every request "
                          "(export them by configuring BentoML's tracing, e.g. an OTLP "
                          "exporter). Off by default: BentoML wraps every request in a span "
                          "even when nothing exports it, and leaving it out served 12% more "
                          "single-pair requests (docs/measurements.md).")
    access_log: bool = Field(False, description="BentoML's access log: one line per request "
                             "(method, path, status, sizes, latency). Off by default: it took "
                             "about a sixth of the event loop's time under load (docs/"
                             "measurements.md), and /metrics already counts requests and their "
                             "latencies by route and status; every answer's X-Request-Id "
                             "names it in the service's own log lines.")

    @property
    def feedback_enabled(self) -> bool:
        return bool(self.feedback_dsn or self.feedback_db)

    def model_tag(self, role: str) -> str:
        """The store tag asked for in ALIGNSERVE_<ROLE>_MODEL ('' for none)."""
        tag: str = getattr(self, f"{role}_model")
        return tag

    def min_precision(self) -> float | dict[str, float] | None:
        """ALIGNSERVE_MODERATION_MIN_PRECISION parsed: None when empty."""
        return parse_min_precision(self.moderation_min_precision)

    @model_validator(mode="after")
    def _safe(self) -> Settings:
        known = {f"{PREFIX}{name.upper()}" for name in type(self).model_fields} | OTHER_VARIABLES
        unknown = sorted(k for k in os.environ if k.startswith(PREFIX) and k not in known)
        if unknown:  # a mistyped variable must not silently leave a default in place
            raise ValueError(f"unknown settings {unknown}; known: {sorted(known)}")
        if self.api_key is not None and len(self.api_key.get_secret_value()) < 16:
            raise ValueError("ALIGNSERVE_API_KEY must be at least 16 characters")
        parse_min_precision(self.moderation_min_precision)  # a bad value stops start-up
        if self.provider is Provider.cpu and self.graph is Graph.fp16:
            raise ValueError("ALIGNSERVE_GRAPH=fp16 needs ALIGNSERVE_PROVIDER=cuda: "
                             "the CPU has no fast fp16 kernels")
        return self


def parse_min_precision(text: str) -> float | dict[str, float] | None:
    """'' -> None, '0.9' -> 0.9, 'hate=0.9,offensive=0.8' -> {'hate': 0.9, ...}; each value
    in (0, 1]."""
    text = text.strip()
    if not text:
        return None

    def value(part: str) -> float:
        try:
            number = float(part)
        except ValueError:
            number = float("nan")
        if not 0 < number <= 1:
            raise ValueError(f"ALIGNSERVE_MODERATION_MIN_PRECISION: {part!r} is not a "
                             "precision in (0, 1]")
        return number

    if "=" not in text:
        return value(text)
    out = {}
    for item in text.split(","):
        category, _, number = item.partition("=")
        out[category.strip()] = value(number.strip())
    return out


def load_settings() -> Settings:
    """The settings from the environment, or start-up stops with one readable message."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" if e["loc"]
            else e["msg"] for e in exc.errors(include_input=False))
        raise SystemExit(f"alignserve: invalid settings: {problems}") from None


assert all(f"{role}_model" in Settings.model_fields for role in ROLES), "a role lacks its setting"
