"""The parameter schema: every parameter block, checked before the first node runs.

Kedro-free. The YAML files in ``conf/base`` hold the values (the one place each default lives); this
module says what a value may be. :func:`validate_parameters` checks a whole parameter dict (what
``kedro run`` resolves, ``--params`` included) and raises one :class:`ConfigError` that lists every
bad key at once, with its dotted name, the value found and what is expected. Fields are optional
unless a run cannot start without them: the schema checks what is there and forbids unknown keys
(typos). A default it declares (for a caller that leaves a key out) equals conf/base's value, and
tests/test_defaults.py keeps the two equal.

Allowed values come from the core modules (``SEGMENTERS``, ``EMBEDS``, ``SCHEDULES``, ``MODES``,
``SOURCES`` …), so a new option added there is accepted here without a second list.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from p3_pruning import dpp, methods, pacing, refresh, scoring, segment
from p3_pruning.data import SOURCES
from p3_pruning.data.readers import looks_like_hub_id
from p3_pruning.methods import METHODS
from p3_pruning.models import SMOLLM2, TINY

PACKAGED_MODELS = (SMOLLM2, TINY)
DATA_SOURCES = ("default", *SOURCES)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
LOSS_ON = ("response", "all")
DEVICES = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")

PositiveInt = Annotated[StrictInt, Field(ge=1)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
Number = StrictFloat | StrictInt
Fraction01 = Annotated[float, Field(gt=0, le=1)]


class ConfigError(ValueError):
    """Bad parameters: ``problems`` is a list of ``(dotted key, value found, what is expected)``."""

    def __init__(self, problems: list[tuple[str, Any, str]], where: str = "parameters") -> None:
        self.problems = problems
        lines = [
            f"  - {key}: found {_show(value)}; {expected}" for key, value, expected in problems
        ]
        super().__init__(
            f"{len(problems)} bad {where} (conf/<env>/parameters*.yml or --params):\n"
            + "\n".join(lines)
        )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Block(BaseModel):
    """A parameter block: unknown keys are typos."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


def _one_of(value, allowed, what: str):
    if value not in allowed:
        raise ValueError(f"expected one of {list(allowed)} for {what}")
    return value


# ----------------------------------------------------------------------------------- model
class ModelParams(Block):
    name_or_path: str
    device: str | None = None
    dtype: str | None = None
    cache_dir: str | None = None
    seed: NonNegativeInt | None = None
    trust_remote_code: StrictBool | None = None

    @field_validator("name_or_path")
    @classmethod
    def _model_exists(cls, value: str) -> str:
        if value in PACKAGED_MODELS or Path(value).expanduser().is_dir():
            return value
        if not HUB_ID.match(value):
            raise ValueError(
                f"expected an existing model folder, a packaged model {list(PACKAGED_MODELS)} or a "
                "hub id of the form 'owner/name'"
            )
        if _offline() and not _in_hub_cache(value):
            raise ValueError(
                "this is a hub id, but the hub is off (HF_HUB_OFFLINE is set) and the model is not "
                "in the local Hugging Face cache: download it first, give a local folder, or use "
                f"one of the packaged models {list(PACKAGED_MODELS)}"
            )
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value):
        if value is not None and not DEVICES.match(value):
            raise ValueError("expected auto, cpu, mps, cuda or cuda:<index>")
        return value

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value):
        return value if value is None else _one_of(value, DTYPES, "dtype")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers brings huggingface_hub
        return False
    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


# ------------------------------------------------------------------------------------ data
class DefaultData(Block):
    n: Annotated[StrictInt, Field(ge=2)]
    seed: NonNegativeInt
    tasks: list[str]
    levels: dict[str, dict[str, dict[str, Any]]] | None = None
    fill: bool = False

    @field_validator("levels")
    @classmethod
    def _levels_for_tasks(cls, value, info: ValidationInfo):
        missing = [t for t in info.data.get("tasks") or [] if value is not None and t not in value]
        if missing:
            raise ValueError(f"expected an entry for every task; missing {missing}")
        return value


class SplitParams(Block):
    eval_size: PositiveInt | Annotated[float, Field(gt=0, lt=1)]
    seed: NonNegativeInt
    stratify: list[str] | None = None
    max_train: PositiveInt | None = None
    max_eval: PositiveInt | None = None


class InjectParams(Block):
    """``data.inject``: the composed-pool experiment (``p3_pruning.data.inject``); zeros: off."""

    seed: NonNegativeInt = 0
    noise: Annotated[float, Field(ge=0, lt=1)] = 0.0
    duplicate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    off_task: Annotated[float, Field(ge=0, lt=1)] = 0.0
    too_hard: Annotated[float, Field(ge=0, lt=1)] = 0.0
    exact_duplicates: bool = False
    off_task_tasks: Annotated[list[str], Field(min_length=1)] = [
        "spell_backward",
        "letter_counting",
    ]
    too_hard_levels: dict[str, dict[str, dict[str, Any]]] | None = None

    @field_validator("too_hard")
    @classmethod
    def _sum(cls, value, info: ValidationInfo):
        total = value + sum(info.data.get(k) or 0 for k in ("noise", "duplicate", "off_task"))
        if total >= 1:
            raise ValueError(f"expected the fractions to sum to < 1 (some clean rows), got {total}")
        return value


class DataParams(Block):
    source: str
    path: str | None = Field(default=None, validate_default=True)
    eval_path: str | None = Field(default=None, validate_default=True)
    columns: dict[str, str] | None = None
    on_bad_record: Literal["raise", "quarantine"] = "raise"
    duplicates: Literal["keep", "quarantine"] = "keep"  # same prompt+response, other sample_id
    default: DefaultData | None = Field(default=None, validate_default=True)
    split: SplitParams | None = None
    inject: InjectParams | None = None

    @field_validator("inject")
    @classmethod
    def _inject(cls, value, info: ValidationInfo):
        if value is not None and value.too_hard and info.data.get("source") != "default":
            raise ValueError("too_hard needs data.source default (its levels are extended)")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value):
        return _one_of(value, DATA_SOURCES, "data.source")

    @field_validator("path", "eval_path")
    @classmethod
    def _file(cls, value, info: ValidationInfo):
        source = info.data.get("source")
        if source == "default":
            if value and info.field_name == "eval_path":
                raise ValueError("expected null: data.eval_path needs a file source, not default")
            return value
        if not value:
            if info.field_name == "path" and source is not None:
                raise ValueError(f"expected a file (or hub id) when data.source is {source!r}")
            return value
        if Path(value).expanduser().exists():
            return value
        if not looks_like_hub_id(value):
            raise ValueError("expected an existing file (paths are relative to the project)")
        if _offline():
            raise ValueError(
                "not a file here; read as a hub dataset id it needs the hub, which is off "
                "(HF_HUB_OFFLINE is set)"
            )
        return value

    @field_validator("default")
    @classmethod
    def _default(cls, value, info: ValidationInfo):
        if value is None and info.data.get("source") == "default":
            raise ValueError("expected the generator settings when data.source is default")
        return value


# --------------------------------------------------------------------------------- a round
class RayParams(Block):
    address: str | None = None
    num_workers: PositiveInt | None = None
    num_gpus_per_worker: Annotated[Number, Field(ge=0)] | None = None
    num_cpus_per_worker: Annotated[Number, Field(gt=0)] | None = None
    threads_per_worker: PositiveInt | None = None
    batch_rows: PositiveInt | None = None
    num_cpus: PositiveInt | None = None
    object_store_memory: PositiveInt | None = None


class IncrementalParams(Block):
    """``scoring.incremental``: the rescoring rule of ``refresh: incremental`` (p3_pruning.refresh)."""

    margin: Annotated[Number, Field(ge=0, le=100)] | None = None
    drift_fraction: Annotated[Number, Field(ge=0, le=1)] | None = None
    min_drift: NonNegativeInt | None = None


class ShardParams(Block):
    """``scoring.shards``: resumable scoring (p3_pruning.shards)."""

    rows: PositiveInt | None = None  # samples a shard; null: scoring is not sharded
    dir: Annotated[str, Field(min_length=1)] | None = None


class ScoringParams(Block):
    segmenter: str | None = None
    pattern: str | None = Field(default=None, validate_default=True)
    embed: str | None = None
    max_length: Annotated[StrictInt, Field(ge=16)] | None = None
    token_budget: PositiveInt | None = None
    chunk_tokens: PositiveInt | None = None
    vocab_chunk: PositiveInt | None = None
    n_prompt_probs: PositiveInt | None = None
    system: str | None = None
    autocast: StrictBool | None = None
    prefix_cache: StrictBool | None = None
    progress: StrictBool | None = None
    # score only a seeded random subset of the pool each round: a count, or a fraction in (0, 1]
    candidates: PositiveInt | Fraction01 | None = None
    # full (the paper) | incremental (p3_pruning.refresh); shapes the DAG: set in a config file
    refresh: str | None = None
    incremental: IncrementalParams | None = None
    backend: Literal["local", "ray"] | None = None
    ray: RayParams | None = None
    shards: ShardParams | None = None

    @field_validator("refresh")
    @classmethod
    def _refresh(cls, value):
        return value if value is None else _one_of(value, refresh.REFRESH, "refresh")

    @field_validator("segmenter")
    @classmethod
    def _segmenter(cls, value):
        return value if value is None else _one_of(value, segment.SEGMENTERS, "segmenter")

    @field_validator("embed")
    @classmethod
    def _embed(cls, value):
        return value if value is None else _one_of(value, scoring.EMBEDS, "embed")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value, info: ValidationInfo):
        if info.data.get("segmenter") == "regex" and not value:
            raise ValueError("expected a regex: the regex segmenter needs scoring.pattern")
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"expected a valid regex ({exc})") from exc
        return value


class PacingParams(Block):
    start: Annotated[Number, Field(ge=0, le=100)]
    end: Annotated[Number, Field(ge=0, le=100)]
    schedule: str = "linear"
    alpha: Number | None = None
    power: Annotated[Number, Field(ge=1)] | None = None

    @field_validator("end")
    @classmethod
    def _order(cls, value, info: ValidationInfo):
        start = info.data.get("start")
        if start is not None and start > value:
            raise ValueError(f"expected a value >= pacing.start ({start})")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value, info: ValidationInfo):
        _one_of(value, pacing.SCHEDULES, "schedule")
        if value == "geometric" and not (info.data.get("start") or 0) > 0:
            raise ValueError(
                "expected pacing.start > 0 for the geometric schedule (or another one)"
            )
        return value


class SelectionParams(Block):
    ridge: Annotated[Number, Field(ge=0)] | None = None
    dpp_mode: str | None = None
    delta: Annotated[float, Field(gt=0, lt=1)] | None = None
    quality_floor: Annotated[float, Field(gt=0)] | None = None
    quality: str | None = None

    @field_validator("dpp_mode")
    @classmethod
    def _mode(cls, value):
        return value if value is None else _one_of(value, dpp.MODES, "dpp_mode")

    @field_validator("quality")
    @classmethod
    def _quality(cls, value):
        from p3_pruning.strategies import QUALITY_RULES

        return value if value is None else _one_of(value, QUALITY_RULES, "selection.quality")

    @field_validator("ridge")
    @classmethod
    def _finite_ridge(cls, value):
        if value is not None and not math.isfinite(value):
            raise ValueError("expected a finite number >= 0 (dpp.greedy_map refuses inf and nan)")
        return value


class LoraParams(Block):
    r: PositiveInt
    alpha: Annotated[Number, Field(gt=0)]
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    target_modules: list[str] | str | None = None


class TrainingParams(Block):
    lora: LoraParams | None = None
    learning_rate: Annotated[float, Field(gt=0)]
    epochs: PositiveInt | None = None
    batch_size: PositiveInt
    grad_accum: PositiveInt | None = None
    max_length: Annotated[StrictInt, Field(ge=16)] | None = None
    loss_on: Literal["response", "all"] | None = None
    lr_scheduler: str | None = None
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] | None = None  # train_round: [0, 1)
    weight_decay: Annotated[float, Field(ge=0)] | None = None
    max_grad_norm: Annotated[float, Field(gt=0)] | None = None
    group_by_length: StrictBool | None = None
    gradient_checkpointing: StrictBool | None = None
    qlora: StrictBool | None = None
    system: str | None = None
    output_dir: str | None = None
    progress: StrictBool | None = None
    launcher: Literal["local", "torchrun", "accelerate"] | None = None
    nproc_per_node: PositiveInt | None = None
    launcher_args: list[str] | None = None
    # stop when the recent mean loss passes this multiple of the start's; null: off (training.py)
    divergence_factor: Annotated[float, Field(gt=1)] | None = None

    @field_validator("lr_scheduler")
    @classmethod
    def _scheduler(cls, value):
        if value is None:
            return value
        from transformers import SchedulerType

        return _one_of(value, [s.value for s in SchedulerType], "lr_scheduler")


class CheapEvalParams(Block):
    max_samples: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    max_length: Annotated[StrictInt, Field(ge=16)] | None = None
    system: str | None = None
    difficulty: StrictBool | None = None
    progress: StrictBool | None = None


class GraderParams(Block):
    name: str
    pattern: str | None = Field(default=None, validate_default=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value):
        from p3_pruning.graders import GRADERS

        return _one_of(value, GRADERS, "generation.grader.name")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value, info: ValidationInfo):
        if info.data.get("name") == "regex":
            if not value:
                raise ValueError(
                    "expected a regex: the regex grader needs generation.grader.pattern"
                )
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"expected a valid regex ({exc})") from exc
        return value


class GenerationParams(Block):
    max_new_tokens: PositiveInt
    batch_size: PositiveInt | None = None
    system: str | None = None
    stop_at_answer: StrictBool | None = None
    grade_options: dict[str, Any] | None = None
    grader: GraderParams | None = None
    progress: StrictBool | None = None
    backend: Literal["local", "ray"] | None = None
    ray: RayParams | None = None


# ----------------------------------------------------------------------------------- sweep
class ScheduleParams(Block):
    start: Annotated[Number, Field(ge=0, le=100)] | None = None
    end: Annotated[Number, Field(ge=0, le=100)] | None = None
    schedule: str | None = None
    power: Annotated[Number, Field(ge=1)] | None = None
    alpha: Number | None = None

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value):
        return value if value is None else _one_of(value, pacing.SCHEDULES, "schedule")


class SweepParams(Block):
    method: str
    round: PositiveInt
    percentiles: Annotated[list[Annotated[Number, Field(ge=0, le=100)]], Field(min_length=1)]
    budgets: Annotated[
        list[PositiveInt | Annotated[StrictFloat, Field(gt=0, le=1)]], Field(min_length=1)
    ]
    ridges: Annotated[list[Annotated[Number, Field(ge=0)]], Field(min_length=1)]
    schedules: dict[str, ScheduleParams] | None = None
    progress: StrictBool | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, value):
        scored = list(methods.names(scoring=("rescore", "once")))
        return _one_of(value, scored, "sweep.method (a method that scores the pool)")


# ---------------------------------------------------------------------------------- export
class ExportParams(Block):
    format: Literal["input", "messages"]
    methods: Annotated[list[str], Field(min_length=1)]

    @field_validator("methods")
    @classmethod
    def _methods(cls, value):
        for method in value:
            _one_of(method, METHODS, "export.methods")
        return value


# ----------------------------------------------------------------------------------- study
ARM_BLOCKS = ("budget", "scoring", "pacing", "selection", "training")  # what an arm may override


class ArmParams(Block):
    """``study.arms.<name>``: a method plus overrides of the round's parameter blocks (merged
    into the run's blocks key by key), over its own seeds or the study's."""

    method: str
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)] | None = None
    budget: PositiveInt | Fraction01 | None = None
    scoring: dict[str, Any] | None = None
    pacing: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    training: dict[str, Any] | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, value):
        return _one_of(value, METHODS, "study.arms.<name>.method")

    def overrides(self) -> dict[str, Any]:
        """The blocks this arm overrides (``ARM_BLOCKS`` keys that are set)."""
        return {k: getattr(self, k) for k in ARM_BLOCKS if getattr(self, k) is not None}


class StudyParams(Block):
    methods: Annotated[list[str], Field(min_length=0)]
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)]
    arms: dict[str, ArmParams] = {}

    @field_validator("arms")
    @classmethod
    def _arms(cls, value, info: ValidationInfo):
        for name in value:
            if not name.isidentifier() or name in ("base", "study"):
                raise ValueError(
                    f"arm name {name!r}: expected an identifier other than base, study"
                )
            if name in METHODS and value[name].method != name:
                raise ValueError(f"arm {name!r} is a method name: it must run that method")
            if name in (info.data.get("methods") or []):
                raise ValueError(f"arm {name!r} is also in study.methods: name it once")
        if not value and not info.data.get("methods"):
            raise ValueError("expected study.methods or study.arms to name at least one arm")
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value):
        for method in value:
            _one_of(method, METHODS, "study.methods")
        if len(set(value)) != len(value):
            raise ValueError("expected each method once")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value):
        if len(set(value)) != len(value):
            raise ValueError("expected each seed once")
        return value


# ----------------------------------------------------------------------------- the whole
class Parameters(Block):
    """Every parameter of the project (``conf/base/parameters*.yml``)."""

    sweep: SweepParams | None = None
    export: ExportParams | None = None
    study: StudyParams | None = None

    seed: NonNegativeInt
    rounds: PositiveInt
    budget: PositiveInt | Fraction01
    model: ModelParams
    data: DataParams
    scoring: ScoringParams
    pacing: PacingParams
    selection: SelectionParams
    training: TrainingParams
    cheap_eval: CheapEvalParams
    generation: GenerationParams

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, value):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected an int >= 1 (samples per round) or a float in (0, 1]")
        if isinstance(value, int) and value < 1:
            raise ValueError("expected an int >= 1 (samples per round) or a float in (0, 1]")
        if isinstance(value, float) and not (0 < value <= 1 and math.isfinite(value)):
            raise ValueError(
                "a float budget is a fraction of the pool and must be in (0, 1]; give an int for "
                "a number of samples"
            )
        return value


def _expected(error: dict) -> str:
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if error["type"] == "extra_forbidden":
        return "unknown key (a typo?)"
    if error["type"] == "missing":
        return "required key is missing"
    return message[0].lower() + message[1:] if message else message


def _dotted(loc: tuple) -> str:
    # unions add the member type to the location (e.g. budget.int); keep the keys only
    keys = [str(part) for part in loc if not _is_type_tag(part)]
    return ".".join(keys)


def _is_type_tag(part) -> bool:
    return isinstance(part, str) and (
        part in {"int", "float", "str", "bool", "list[str]", "dict[str,str]", "none"}
        or part.startswith(("constrained-", "function-", "lax-", "strict-", "json-"))
        or "[" in part
    )


def _value_at(params: dict, key: str):
    node: Any = params
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def pool_size(params: dict) -> int | None:
    """Train pool size implied by the config when it is known before the data step (the default
    source: ``n`` minus the eval split); None for file sources."""
    data = params.get("data") or {}
    if data.get("source") != "default":
        return None
    n = int(data["default"]["n"])
    eval_size = (data.get("split") or {}).get("eval_size", 0)
    if isinstance(eval_size, float) and not float(eval_size).is_integer():
        eval_size = max(1, round(eval_size * n))
    return n - int(eval_size)


def validate_parameters(params: dict) -> Parameters:
    """Check every block of ``params``; raise :class:`ConfigError` listing every problem at once."""
    problems: list[tuple[str, Any, str]] = []
    parsed = None
    try:
        parsed = Parameters.model_validate(params)
    except ValidationError as exc:
        seen = set()
        for error in exc.errors():
            key = _dotted(error["loc"]) or "parameters"
            expected = _expected(error)
            if (key, expected) in seen:
                continue
            seen.add((key, expected))
            value = _value_at(params, key) if error["type"] != "missing" else None
            problems.append((key, value, expected))
    if not problems:
        pool = pool_size(params)
        budget = params["budget"]
        if pool is not None and isinstance(budget, int) and budget > pool:
            problems.append(
                (
                    "budget",
                    budget,
                    f"at most the train pool's {pool} samples (data.default.n "
                    "minus data.split.eval_size)",
                )
            )
        n = params["data"]["default"]["n"] if params["data"]["source"] == "default" else None
        if pool is not None and pool < 1:
            problems.append(
                (
                    "data.split.eval_size",
                    params["data"]["split"]["eval_size"],
                    f"fewer than data.default.n = {n} samples",
                )
            )
    if not problems and parsed.study is not None:
        problems += _arm_problems(params, parsed.study)
    if problems:
        raise ConfigError(problems)
    return parsed


def merge_block(base: Any, override: Any) -> Any:
    """``override`` merged into ``base`` key by key (nested dicts merge; anything else replaces)."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge_block(base.get(key), value)
        return out
    return override


def arm_parameters(params: dict, arm: ArmParams) -> dict:
    """The run's parameters with the arm's overrides merged in."""
    return {**params, **{k: merge_block(params.get(k), v) for k, v in arm.overrides().items()}}


def _arm_problems(params: dict, study: StudyParams) -> list[tuple[str, Any, str]]:
    """Each arm's merged parameters checked like the run's, keys named ``study.arms.<name>.…``."""
    problems = []
    for name, arm in study.arms.items():
        try:
            validate_parameters({**arm_parameters(params, arm), "study": None})
        except ConfigError as exc:
            problems += [(f"study.arms.{name}.{k}", v, e) for k, v, e in exc.problems]
    return problems


def check_budget(params: dict, n_train: int) -> None:
    """A budget in samples (an int) must fit the train pool. Checked once the pool exists (after the
    data split, or when a run reads a saved one), for every source; before any scoring."""
    budget = params.get("budget")
    if isinstance(budget, int) and not isinstance(budget, bool) and budget > n_train:
        raise ConfigError(
            [
                (
                    "budget",
                    budget,
                    f"at most the train pool's {n_train} samples (after the data split; lower "
                    "budget or give a float fraction of the pool)",
                )
            ]
        )


def check_rounds(params: dict, pipeline_rounds: int | None) -> None:
    """The DAG was unrolled for ``pipeline_rounds`` rounds: ``rounds`` must say the same."""
    if pipeline_rounds is not None and params.get("rounds") != pipeline_rounds:
        raise ConfigError(
            [
                (
                    "rounds",
                    params.get("rounds"),
                    f"expected {pipeline_rounds}, the number of rounds the pipeline was built "
                    "with: rounds "
                    "shapes the DAG, so set it in conf/<env>/parameters.yml, not with --params",
                )
            ]
        )


__all__ = [
    "ArmParams",
    "ConfigError",
    "Parameters",
    "arm_parameters",
    "check_budget",
    "check_rounds",
    "merge_block",
    "pool_size",
    "validate_parameters",
]
