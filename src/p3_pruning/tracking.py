"""What MLflow shows of a run: the experiment's kind, the parent run's name, compute as metrics.

Kedro-free (the hooks in ``p3_pruning.hooks`` call it).

- **Experiment kind.** MLflow 3's UI opens an experiment on its GenAI overview ("Traces") unless
  the experiment carries the tag ``mlflow.experimentKind`` = ``custom_model_development``; with it
  the UI opens on the runs table. kedro-mlflow creates the experiment without tags, and an
  experiment made by an older version of the project has none: :func:`mark_experiment` sets it on
  whichever experiment the run logs to.
- **Parent run name.** kedro-mlflow names the run after the pipeline (``__default__`` for a plain
  ``kedro run``); :func:`parent_run_name` names it after what was run and its key settings,
  ``p3 · budget 0.45 · seed 42``.
- **Compute.** Each child run (a method-round, a final evaluation) gets the tokens and estimated
  FLOPs of every stage and their total from :func:`p3_pruning.compute.round_compute` /
  :func:`~p3_pruning.compute.run_compute`, the functions the study report uses, so MLflow's compare
  view and the report agree to the FLOP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from p3_pruning.compute import TOKEN_STAGES
from p3_pruning.methods import P3

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # the value MLflow 3.17's UI checks for the runs view
DEFAULT_PIPELINE = "__default__"
DEFAULT_LABEL = P3  # what the default pipeline runs: data, P3's rounds, the final evaluations
COMPUTE_STAGES = TOKEN_STAGES
ROUND_PREFIX = (
    "compute/"  # the child run's own stages (a round, or a final evaluation's generation)
)
RUN_PREFIX = (
    "run_compute/"  # a final evaluation's run: every round of the method plus the evaluation
)


def mark_experiment(client, experiment_id: str) -> bool:
    """Tag the experiment as model development (the UI opens on its runs); True if it changed.

    client: an ``mlflow.tracking.MlflowClient`` on the run's tracking store.
    """
    experiment = client.get_experiment(experiment_id)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND:
        return False
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return True


def default_run_name(pipeline_names: Iterable[str] | None) -> str:
    """The name kedro-mlflow gives a run when ``tracking.run.name`` is not set: the pipelines' names."""
    return "+".join(pipeline_names or [DEFAULT_PIPELINE])


def parent_run_name(pipeline_names: Iterable[str] | None, params: Mapping) -> str:
    """``<pipeline> · budget <budget> · seed <seed>`` (a study: ``seeds <s1>,<s2>,…``).

    >>> parent_run_name(None, {"budget": 0.45, "seed": 42})
    'p3 · budget 0.45 · seed 42'
    >>> parent_run_name(["study"], {"budget": 90, "seed": 0, "study": {"seeds": [1, 2, 3]}})
    'study · budget 90 · seeds 1,2,3'
    """
    names = [
        DEFAULT_LABEL if n == DEFAULT_PIPELINE else n for n in pipeline_names or ["__default__"]
    ]
    parts = ["+".join(names)]
    if params.get("budget") is not None:
        parts.append(f"budget {params['budget']}")
    seeds = (params.get("study") or {}).get("seeds") if "study" in names else None
    if seeds:
        parts.append("seeds " + ",".join(str(s) for s in seeds))
    elif params.get("seed") is not None:
        parts.append(f"seed {params['seed']}")
    return " · ".join(parts)


def compute_metrics(compute: Mapping[str, float], prefix: str = ROUND_PREFIX) -> dict[str, float]:
    """Tokens and FLOPs per stage and in total as MLflow metrics, from the result of
    ``round_compute`` or ``run_compute``.

    >>> from p3_pruning.compute import round_compute
    >>> m = compute_metrics(round_compute({"score_tokens": 100, "train_n_input_tokens": 50}, 10, 1))
    >>> m["compute/score_flops"], m["compute/train_flops"], m["compute/total_tokens"]
    (2000.0, 2300.0, 150.0)
    """
    out: dict[str, float] = {}
    for stage in COMPUTE_STAGES:
        out[f"{prefix}{stage}_tokens"] = float(compute[f"{stage}_tokens"])
        out[f"{prefix}{stage}_flops"] = float(compute[f"{stage}_flops"])
    out[f"{prefix}total_tokens"] = sum(out[f"{prefix}{s}_tokens"] for s in COMPUTE_STAGES)
    out[f"{prefix}total_flops"] = float(compute["total_flops"])
    return out


def parameter_counts(records: Iterable[Mapping]) -> tuple[int, int] | None:
    """``(P, P_lora)`` the finetune step recorded (``train_params``, ``train_lora_params``) in the
    first record that has them, as the study report takes them; None when none has."""
    for record in records:
        if record.get("train_params") is not None:
            return int(record["train_params"]), int(record.get("train_lora_params") or 0)
    return None
