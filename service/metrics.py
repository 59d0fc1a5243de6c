"""The service's own Prometheus metrics, on top of BentoML's request metrics.

Plain prometheus_client objects: `bentoml serve` sets PROMETHEUS_MULTIPROC_DIR before it imports
the service in each worker, so the engine's and the API's samples meet in one /metrics.
Buckets are chosen for what each measures on this service (see the comments), not defaults.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from models.manifest import Manifest, Task

PREFIX = "alignserve_"
POWERS_OF_TWO = tuple(float(2**k) for k in range(11))  # 1 .. 1024

# Items and padded tokens per onnxruntime call: how full the micro-batches are.
BATCH_ITEMS = Histogram(f"{PREFIX}batch_items", "Items per inference batch.", ["model"],
                        buckets=POWERS_OF_TWO)
BATCH_TOKENS = Histogram(f"{PREFIX}batch_tokens", "Padded tokens per inference batch "
                         "(items x longest item).", ["model"],
                         buckets=tuple(float(2**k) for k in range(5, 17)))
# Hand-off to the engine until its batch starts: ~1 ms idle, seconds when saturated.
QUEUE_WAIT = Histogram(f"{PREFIX}queue_wait_seconds", "Time an item waits for its inference "
                       "batch to start.", ["model"],
                       buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
TOKENISATION = Histogram(f"{PREFIX}tokenisation_seconds", "Tokenisation time per request.",
                         ["model"], buckets=(.0001, .00025, .0005, .001, .0025, .005, .01, .025,
                                             .05, .1))
# One MiniLM item is ~5-20 ms on a CPU core; a full batch is around a second.
INFERENCE = Histogram(f"{PREFIX}inference_seconds", "onnxruntime time per inference batch.",
                      ["model"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                          2.5, 5, 10))
INPUT_TOKENS = Histogram(f"{PREFIX}input_tokens", "Tokens per item after truncation.",
                         ["model"], buckets=(8, 16, 32, 64, 96, 128, 192, 256, 384, 512))
TRUNCATIONS = Counter(f"{PREFIX}truncations_total", "Items cut to fit the model's length, by "
                      "the field that was cut.", ["model", "field"])
FAILURES = Counter(f"{PREFIX}failures_total", "Requests answered with an error, by type.",
                   ["error_type"])
# Normalised on the validation responses, so a healthy stream sits around mean 0, std 1:
# a drifting mean is visible without knowing the model's raw scale.
REWARD = Histogram(f"{PREFIX}reward_normalised", "Normalised reward of every scored response.",
                   ["model", "version"],
                   buckets=(-3, -2, -1.5, -1, -.5, 0, .5, 1, 1.5, 2, 3))
MODEL_INFO = Gauge(f"{PREFIX}model_info", "1 for each model the service runs.",
                   ["model", "version", "task", "provider", "quantisation"],
                   multiprocess_mode="max")
READY = Gauge(f"{PREFIX}model_ready", "1 once the model is loaded and warmed up, 0 before or "
              "when it refused to serve.", ["model"], multiprocess_mode="max")
QUEUED = Gauge(f"{PREFIX}queued_items", "Items waiting for or in inference (see "
               "ALIGNSERVE_MAX_QUEUED_ITEMS).", ["model"], multiprocess_mode="livesum")
QUEUE_LIMIT = Gauge(f"{PREFIX}queued_items_limit", "ALIGNSERVE_MAX_QUEUED_ITEMS: beyond it, "
                    "requests get 429.", ["model"], multiprocess_mode="max")
EXPIRED = Counter(f"{PREFIX}deadline_expired_total", "Queued requests answered 429 because "
                  "they could no longer finish by their deadline.", ["model"])
# Tens of microseconds when idle; hundreds of milliseconds under a flood of refused retries.
LOOP_LAG = Gauge(f"{PREFIX}event_loop_lag_seconds", "How late the serving event loop runs a "
                 "due task, smoothed; admission counts it twice against each request's "
                 "deadline.", multiprocess_mode="max")
MODERATED = Counter(f"{PREFIX}moderation_inputs_total", "Texts moderated, the denominator of "
                    "the flag rate.", ["model", "version"])
FLAGS = Counter(f"{PREFIX}moderation_flags_total", "Texts flagged, by category: a spike in "
                "rate(flags) / rate(inputs) is drift or an attack.",
                ["model", "version", "category"])

# Feedback (POST /v1/feedback). `source` is the part of the record's source before the first ':'
# ("agent:42" -> "agent"), at most MAX_SOURCES distinct values per process, then "other": a
# free label must not grow the series without bound.
FEEDBACK = Counter(f"{PREFIX}feedback_records_total", "Feedback records stored (duplicates "
                   "of a stored id not counted), by kind and source.", ["kind", "source"])
FEEDBACK_PURGED = Counter(f"{PREFIX}feedback_purged_total", "Feedback records erased by the "
                          "retention setting.")
# The online accuracy of the served reward model: each stored preference record is scored by
# the version serving at that moment; agreed="true" when it ranked `chosen` higher.
# rate(agreed="true") / rate(all) is the live agreement with people, per version.
PREFERENCE_AGREEMENT = Counter(f"{PREFIX}preference_feedback_agreement_total",
                               "Preference feedback scored by the served reward model, by "
                               "whether it ranked the chosen reply higher.",
                               ["model", "version", "agreed"])
AGREEMENT_SKIPPED = Counter(f"{PREFIX}preference_feedback_unscored_total", "Preference "
                            "records stored but not scored for the agreement (the backlog was "
                            "full, or no reward model served).")
MAX_SOURCES = 32
_sources: set[str] = set()


def source_label(source_class: str) -> str:
    if source_class in _sources or len(_sources) < MAX_SOURCES:
        _sources.add(source_class)
        return source_class
    return "other"


def start_series(manifest: Manifest) -> None:
    """Create every labelled counter of a model at 0, so that rate() and alerts see a series
    before the first truncation or flag instead of no data."""
    fields = ("prompt", "response") if manifest.task is Task.reward else ("text",)
    for field in fields:
        TRUNCATIONS.labels(manifest.name, field)
    if manifest.task is Task.reward:
        for agreed in ("true", "false"):
            PREFERENCE_AGREEMENT.labels(manifest.name, manifest.version, agreed)
    if manifest.task is Task.multilabel:
        MODERATED.labels(manifest.name, manifest.version)
        for category in manifest.labels:
            FLAGS.labels(manifest.name, manifest.version, category)
