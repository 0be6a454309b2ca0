"""Kedro hooks: parameters checked before the first node, per-node reseeding (every node reproducible
on its own and on resume), memory release after each node, a child MLflow run per method-round, runs
of killed processes ended as KILLED, and the result table at the end of every run."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import math
import os
import random
import signal
import socket
import threading
import time
import zlib

import numpy as np
import torch
from kedro.framework.hooks import hook_impl

from p3_pruning import namespaces, tracking
from p3_pruning.compute import SECONDS_KEYS, round_compute, run_compute
from p3_pruning.config import check_budget, check_rounds, validate_parameters
from p3_pruning.pipelines.common import FINAL_TAG, REPORT_TAG, SUMMARY_TAG, VIEW_TAG

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class ConfigCheckHook:
    """Check every parameter before the first node runs (a bad key costs seconds, not a scored pool),
    and the budget against the train pool as soon as the pool exists.

    Also makes the run's environment visible to the pipeline registry, which reads ``rounds``,
    ``study`` and ``sweep`` from that environment's config when it unrolls the DAG. Kedro 1.x calls
    ``register_pipelines()`` without arguments; its own channel for the environment is
    ``KEDRO_ENV`` (``KedroSession.create`` falls back to it, ``kedro ipython --env`` sets it), so the
    hook sets it to the environment Kedro resolved (``--env`` over an inherited ``KEDRO_ENV``).
    """

    def __init__(self) -> None:
        self.params: dict = {}

    @hook_impl(tryfirst=True)  # before any hook reads context.params, which builds the pipelines
    def after_context_created(self, context) -> None:
        if context.env and os.environ.get("KEDRO_ENV") != context.env:
            os.environ["KEDRO_ENV"] = context.env  # --env wins over an inherited KEDRO_ENV
        self.params = dict(context.params)

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params, pipeline) -> None:
        validate_parameters(self.params)
        check_rounds(self.params, pipeline_rounds(run_params.get("pipeline_names")))

    # The train pool's size is known only once it exists (a file source's pool after the split):
    # check the budget against it then, before the first round scores anything.
    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data) -> None:
        if dataset_name == "train_pool":
            check_budget(self.params, len(data))

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data) -> None:
        if dataset_name == "train_pool":
            check_budget(self.params, len(data))


def pipeline_rounds(names) -> int | None:
    """How many rounds the registered pipelines being run were unrolled with (None: no rounds)."""
    from kedro.framework.project import pipelines

    found = [
        place.round
        for name in names or ["__default__"]
        if name in pipelines
        for node in pipelines[name].nodes
        if node.namespace and (place := namespaces.parse(node.namespace)).round is not None
    ]
    return max(found) if found else None


class SeedHook:
    """Reseed before each node from the run seed and crc32 of the node name.

    A node's randomness then depends only on its name and the seed, not on which nodes ran before
    it, so a resumed run reproduces an uninterrupted one.
    """

    def __init__(self) -> None:
        self.seed = 0

    @hook_impl
    def after_context_created(self, context) -> None:
        self.seed = int(context.params.get("seed", 0))

    @hook_impl
    def before_node_run(self, node) -> None:
        seed_everything(self.seed + zlib.crc32(node.name.encode()))


class ReleaseMemoryHook:
    """After each node: collect garbage and hand freed heap pages back to the OS (glibc only).

    Most nodes load a model of their own (peft edits modules in place, so a shared one would carry
    adapters across rounds); the trim returns what the allocator keeps of the freed one (SmolLM2,
    6 load-and-score cycles: resident 0.71 GB between nodes without it, 0.57 GB with it).
    """

    def __init__(self) -> None:
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name else None
        self._trim = getattr(libc, "malloc_trim", None)

    @hook_impl
    def after_node_run(self) -> None:
        gc.collect()
        if self._trim is not None:
            self._trim(0)


def _metrics(record: dict) -> dict[str, float]:
    """The numeric scalars of a record, as MLflow metric names (``/`` kept, other odd chars replaced)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, int | float | np.integer | np.floating) and np.isfinite(value):
            out[str(key).replace(" ", "_")] = float(value)
    return out


def _flat(prefix: str, block) -> dict[str, str]:
    """``{"pacing.start": "45", …}`` from a nested parameter block (MLflow params are strings)."""
    if not isinstance(block, dict):
        return {prefix: str(block)}
    out: dict[str, str] = {}
    for key, value in block.items():
        out.update(_flat(f"{prefix}.{key}", value))
    return out


def where(namespace: str) -> dict:
    """Method (or study arm), seed (None outside a study) and round (None for a final evaluation)
    of a namespace such as ``p3.round_2``, ``p3.seed_7.round_2`` or ``p3.seed_7.final``."""
    place = namespaces.parse(namespace)
    return {"method": place.arm, "seed": place.seed, "round": place.round}


def arm_settings(arm: str, params: dict) -> tuple[str, dict]:
    """The method a namespace's first part runs and the parameters its rounds read: a method runs
    itself on the run's parameters; a study arm (``study.arms.<arm>``) its method on the run's
    parameters with its overrides merged in."""
    from p3_pruning.config import ArmParams, arm_parameters

    spec = ((params.get("study") or {}).get("arms") or {}).get(arm)
    if spec is None:
        return arm, params
    parsed = ArmParams(**spec)
    return parsed.method, arm_parameters(params, parsed)


def method_settings(method: str, params: dict) -> dict[str, str]:
    """The resolved settings of ``method``'s rounds that differ between methods, as MLflow params
    (``params``: the rounds' parameters, an arm's overrides merged in)."""
    from p3_pruning.methods import REGISTRY

    traits = REGISTRY.get(method)
    if traits is None:  # the base model's evaluation: no rounds, no settings
        return {}
    out = {
        "regime": traits.scoring,
        "selector": traits.selector,
        "thresholded": str(traits.thresholded),
    }
    if traits.thresholded:
        out.update(_flat("pacing", params.get("pacing", {})))
    if traits.needs_embeddings:  # the DPP's settings
        out.update(_flat("selection", params.get("selection", {})))
    if traits.scores:
        scoring = params.get("scoring", {})
        keys = ("segmenter", "embed", "candidates", "refresh")
        out.update({f"scoring.{k}": str(scoring.get(k)) for k in keys if k in scoring})
    return out


class MlflowRoundsHook:
    """A child MLflow run per method-round (and per final evaluation) under kedro-mlflow's run.

    kedro-mlflow opens one run per ``kedro run``; this hook adds, after each round's summary node
    (tag ``round_summary``), a child run named after the round's namespace with every metric the
    round measured, params and tags (method, arm, round, seed, budget, rounds and the settings of
    its rounds, an arm's overrides merged in) so
    ``mlflow.search_runs(filter_string="params.method = 'p3'")`` and the UI's compare view work,
    its selection table and its difficulty histogram, tokens and FLOPs per stage
    (``compute/*``, ``p3_pruning.tracking``) and the readable selection page (``selection.md``, tag
    ``selection_view``). Final evaluations (tag ``final_eval``) get a child run too, with the
    whole run's compute (``run_compute/*``: the method's rounds and the evaluation) beside its
    accuracy; report nodes (tag ``report``) log onto the parent run. The experiment is tagged as
    model development and the parent run named after the pipeline and its key settings.
    """

    def __init__(self) -> None:
        self.params: dict = {}
        self.children: dict[str, str] = {}  # round namespace → child run id
        self.views: dict[str, str] = {}  # round namespace → selection page waiting for its child
        self.counts: tuple[int, int] | None = None  # (P, P_lora) of the last round seen
        self.finals: list[tuple[str, str, dict]] = []  # (namespace, child run id, metrics)

    @hook_impl
    def after_context_created(self, context) -> None:
        self.params = dict(context.params)

    @hook_impl(trylast=True)  # after kedro-mlflow has opened its run
    def before_pipeline_run(self, run_params) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.children, self.views, self.counts, self.finals = {}, {}, None, []
        run = mlflow.active_run()
        if run is None:
            return
        client = MlflowClient()
        tracking.mark_experiment(client, run.info.experiment_id)
        names = run_params.get("pipeline_names")
        if run.info.run_name == tracking.default_run_name(names):  # not a name the user chose
            client.update_run(run.info.run_id, name=tracking.parent_run_name(names, self.params))

    def _params(self, namespace: str, round_: str) -> tuple[dict, dict]:
        place = where(namespace)
        arm = place["method"]
        method, settings = arm_settings(arm, self.params)
        seed = place["seed"] if place["seed"] is not None else self.params.get("seed")
        params = {
            "method": method,
            "arm": arm,
            "round": round_,
            "seed": str(seed),
            "budget": str(settings.get("budget")),
            "rounds": str(settings.get("rounds")),
            **method_settings(method, settings),
        }
        tags = {
            "method": method,
            "arm": arm,
            "round": round_,
            "seed": str(seed),
            "namespace": namespace,
        }
        return params, tags

    @hook_impl
    def after_node_run(self, node, catalog, inputs, outputs) -> None:
        import mlflow

        parent = mlflow.active_run()
        if parent is None:
            return
        tags = set(node.tags)
        if SUMMARY_TAG in tags:
            namespace = node.namespace
            summary = next(v for k, v in outputs.items() if k.endswith(".summary"))
            figure = next(v for k, v in outputs.items() if k.endswith(".difficulty_histogram"))
            selection = next(v for k, v in inputs.items() if k.endswith(".selection"))
            params, run_tags = self._params(namespace, str(summary["round"]))
            metrics = _metrics(summary)
            self.counts = tracking.parameter_counts([summary]) or self.counts
            if self.counts is not None:
                metrics.update(tracking.compute_metrics(round_compute(summary, *self.counts)))
            view = self.views.pop(namespace, None)
            self.children[namespace] = self._child(
                parent,
                namespace,
                tags=run_tags,
                params=params,
                metrics=metrics,
                steps={"train_loss_step": summary.get("train_loss_curve") or []},
                figures={"difficulty_histogram.png": figure},
                tables={"selection.csv": selection},
                texts={} if view is None else {"selection.md": view},
            )
        elif VIEW_TAG in tags:  # logged on the round's child run, whichever node ends first
            view = next(iter(outputs.values()))
            if node.namespace in self.children:
                from mlflow.tracking import MlflowClient

                MlflowClient().log_text(self.children[node.namespace], view, "selection.md")
            else:
                self.views[node.namespace] = view
        elif FINAL_TAG in tags:
            namespace = node.namespace
            responses, table, metrics = (outputs[o] for o in node.outputs)
            params, run_tags = self._params(namespace, "final")
            run_id = self._child(
                parent,
                namespace,
                tags=run_tags,
                params=params,
                metrics=_metrics(metrics),
                tables={"metrics.csv": table, "responses.csv": responses},
            )
            self.finals.append((namespace, run_id, metrics))  # compute at the end of the run
            prefix = namespaces.parse(namespace).chain.replace(".", "/")
            mlflow.log_metrics({f"{prefix}/{k}": v for k, v in _metrics(metrics).items()})
        elif REPORT_TAG in tags:
            namespace = node.namespace or "compare"
            folder = "report" if namespace == "compare" else f"report/{namespace}"
            for output in node.outputs:
                value = outputs[output]
                name = output.split(".")[-1].removesuffix("_table")
                if hasattr(value, "to_csv"):
                    mlflow.log_text(value.to_csv(index=False), f"{folder}/{name}.csv")
                elif hasattr(value, "savefig"):
                    mlflow.log_figure(value, f"{folder}/{name}.png")

    @hook_impl
    def after_pipeline_run(self, catalog) -> None:
        """Each final evaluation's compute (``compute/*``) and its run's (``run_compute/*``), as the
        study report computes them. At the end of the run: a final evaluation needs only the last
        adapter, so it may run before the last round's summary is written; the summaries come
        from the catalog, so a resumed run also counts the rounds it skipped."""
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        if not self.finals:
            return
        rounds = int(self.params.get("rounds") or 0)
        summaries = {}
        for namespace, _, _ in self.finals:
            place = namespaces.parse(namespace)
            names = [
                f"{namespaces.round_namespace(place.arm, e, place.seed)}.summary"
                for e in range(rounds)
            ]
            if place.arm == namespaces.BASE:  # no rounds of its own
                names = []
            summaries[namespace] = [catalog.load(n) for n in names if catalog.exists(n)]
        seen = tracking.parameter_counts(s for found in summaries.values() for s in found)
        client, now = MlflowClient(), int(time.time() * 1000)
        for namespace, run_id, metrics in self.finals:
            counts = tracking.parameter_counts(summaries[namespace]) or self.counts or seen
            if counts is None:  # the base model alone, no round anywhere: P unknown
                log.info("%s: no round recorded the parameter count; no FLOPs logged", namespace)
                continue
            own = round_compute(metrics, *counts)
            run = run_compute(summaries[namespace], *counts, final=metrics)
            values = {
                **tracking.compute_metrics(own),
                **tracking.compute_metrics(run, tracking.RUN_PREFIX),
            }
            client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in values.items()])
        self.finals = []

    @staticmethod
    def _child(
        parent,
        run_name,
        *,
        tags,
        params,
        metrics,
        steps=None,
        figures=None,
        tables=None,
        texts=None,
    ) -> str:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        run = client.create_run(
            parent.info.experiment_id,
            run_name=run_name,
            tags={"mlflow.parentRunId": parent.info.run_id, **tags},
        )
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            batch = [Metric(k, v, now, 0) for k, v in metrics.items()]
            for key, values in (steps or {}).items():
                batch += [Metric(key, float(v), now, i) for i, v in enumerate(values)]
            client.log_batch(
                run_id, metrics=batch, params=[Param(k, str(v)[:6000]) for k, v in params.items()]
            )
            for path, fig in (figures or {}).items():
                client.log_figure(run_id, fig, path)
            for path, frame in (tables or {}).items():
                client.log_text(run_id, frame.to_csv(index=False), path)
            for path, text in (texts or {}).items():
                client.log_text(run_id, text, path)
        finally:
            client.set_terminated(run_id)
        return run_id


class MlflowRunStateHook:
    """Runs that a killed ``kedro run`` left RUNNING are ended as KILLED, and a resumed run says
    which run it resumes.

    Every run is tagged with its process (``p3.host``, ``p3.pid``). When the next run starts in the
    same workspace (MLflow store), each other RUNNING run of the experiment whose process on this
    host is gone is set to KILLED (a run without the tags, or from another host, is left alone: its
    process cannot be checked; one still alive is a run beside this one). A run started with
    ``--only-missing-outputs`` or ``--from-nodes`` gets ``p3.resumes``: the latest earlier run of the
    same name that did not finish (FAILED or KILLED).

    Where a signal allows it, the run is ended at once: on SIGTERM, SIGHUP or SIGINT (Ctrl-C) during
    the pipeline the MLflow run is set to KILLED, then the signal takes its usual course (the
    process ends; SIGINT raises ``KeyboardInterrupt``). kill -9 cannot be caught: the next run
    ends it.
    """

    def __init__(self) -> None:
        self.previous: dict[int, object] = {}

    @hook_impl(trylast=True)  # after kedro-mlflow has opened the run
    def before_pipeline_run(self, run_params) -> None:
        import mlflow

        run = mlflow.active_run()
        if run is None:
            return
        self.previous = end_run_on_signals(run.info.run_id)
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        client.set_tag(run.info.run_id, "p3.host", socket.gethostname())
        client.set_tag(run.info.run_id, "p3.pid", str(os.getpid()))
        ended = end_orphaned_runs(client, run)
        if run_params.get("only_missing_outputs") or run_params.get("from_nodes"):
            resumed = resumed_run(client, run)
            if resumed is not None:
                client.set_tag(run.info.run_id, "p3.resumes", resumed)
        if ended:
            log.warning(
                "MLflow: ended %d run(s) left RUNNING by killed runs: %s", len(ended), ended
            )

    @hook_impl
    def after_pipeline_run(self) -> None:
        restore_signals(self.previous)
        self.previous = {}

    @hook_impl
    def on_pipeline_error(self) -> None:
        restore_signals(self.previous)
        self.previous = {}


SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name)
)


def end_run_on_signals(run_id: str) -> dict[int, object]:
    """Install handlers that set the MLflow run ``run_id`` to KILLED on SIGTERM, SIGHUP or SIGINT,
    then hand the signal to the handler that was there before (its default: the process ends;
    SIGINT's: ``KeyboardInterrupt``). A signal the process ignores (SIGHUP under ``nohup``) stays
    ignored: the run goes on, so its MLflow run must too. Returns the previous handlers, for
    :func:`restore_signals`; ``{}`` off the main thread, where Python cannot install them."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {
        sig: signal.getsignal(sig) for sig in SIGNALS if signal.getsignal(sig) != signal.SIG_IGN
    }

    def handler(signum, frame):
        restore_signals(previous)  # a second signal is not caught again
        try:
            import mlflow

            active = mlflow.active_run()
            if active is not None and active.info.run_id == run_id:
                mlflow.end_run(status="KILLED")  # off the active stack: atexit won't finish it
            else:
                mlflow.tracking.MlflowClient().set_terminated(run_id, status="KILLED")
            log.warning("MLflow run %s ended as KILLED by signal %d", run_id, signum)
        except Exception:  # noqa: BLE001 - the signal must go on whatever the store does
            log.exception("could not end MLflow run %s on signal %d", run_id, signum)
        before = previous[signum]
        if callable(before):
            before(signum, frame)
        else:  # SIG_DFL (or a handler Python did not install): the default action, re-raised
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for sig in previous:
        signal.signal(sig, handler)
    return previous


def restore_signals(previous: dict[int, object]) -> None:
    """Put back the handlers :func:`end_run_on_signals` replaced."""
    for sig, before in previous.items():
        signal.signal(sig, before if before is not None else signal.SIG_DFL)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def end_orphaned_runs(client, current) -> list[str]:
    """Set every RUNNING run of ``current``'s experiment whose process on this host is gone to
    KILLED; return their ids."""
    host = socket.gethostname()
    ended = []
    for other in client.search_runs(
        [current.info.experiment_id], filter_string="attributes.status = 'RUNNING'"
    ):
        tags = other.data.tags
        if other.info.run_id == current.info.run_id or tags.get("p3.host") != host:
            continue
        pid = tags.get("p3.pid", "")
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        client.set_tag(other.info.run_id, "p3.ended_by", current.info.run_id)
        client.set_terminated(other.info.run_id, status="KILLED")
        ended.append(other.info.run_id)
    return ended


def resumed_run(client, current) -> str | None:
    """The latest run before ``current`` with its name that did not finish (FAILED or KILLED)."""
    name = current.info.run_name
    for other in client.search_runs(
        [current.info.experiment_id],
        filter_string=f"attributes.run_name = '{name}' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    ):
        if other.info.run_id != current.info.run_id and other.info.status in ("FAILED", "KILLED"):
            if other.info.start_time <= current.info.start_time:
                return other.info.run_id
    return None


# the result table's seconds columns (a round's stages; generation is the final evaluation's):
# compute.SECONDS_KEYS, with threshold and selection in one column
STAGES = tuple(
    (f"{column}_s", tuple(SECONDS_KEYS[stage] for stage in stages))
    for column, stages in (
        ("score", ("score",)),
        ("select", ("threshold", "select")),
        ("train", ("train",)),
        ("eval", ("eval",)),
    )
)


class RunReportHook:
    """At the end of every ``kedro run``: a short result table in the log (and on the MLflow run).

    One row per method (and seed, in a study): final accuracy ± binomial stderr where the run
    evaluated it, rounds, samples trained, and wall seconds per stage (scoring, threshold +
    selection, training, cheap eval, final generation).
    """

    def __init__(self) -> None:
        self.rounds: dict[str, list[dict]] = {}
        self.finals: dict[str, dict] = {}

    @hook_impl
    def before_pipeline_run(self) -> None:
        self.rounds, self.finals = {}, {}

    @hook_impl
    def after_node_run(self, node, outputs) -> None:
        tags = set(node.tags)
        if SUMMARY_TAG in tags:
            summary = next(v for k, v in outputs.items() if k.endswith(".summary"))
            key = namespaces.parse(node.namespace).chain
            self.rounds.setdefault(key, []).append(summary)
        elif FINAL_TAG in tags:
            metrics = next(v for k, v in outputs.items() if k.endswith(".metrics"))
            self.finals[namespaces.parse(node.namespace).chain] = metrics

    def table(self):
        import pandas as pd

        rows = []
        for key in sorted(set(self.rounds) | set(self.finals)):
            place, summaries, final = where(key), self.rounds.get(key, []), self.finals.get(key, {})
            row = {"run": key, "method": place["method"], "seed": place["seed"]}
            row["accuracy"] = final.get("accuracy", math.nan)
            row["stderr"] = final.get("accuracy_stderr", math.nan)
            row["n_eval"] = final.get("n_eval")
            row["rounds"] = len(summaries)
            row["samples_trained"] = int(sum(s.get("selected", 0) for s in summaries))
            for column, keys in STAGES:
                row[column] = float(sum(s.get(k, 0) or 0 for s in summaries for k in keys))
            row["generation_s"] = final.get("generation_seconds", math.nan)
            rows.append(row)
        return pd.DataFrame(rows)

    @hook_impl(tryfirst=True)  # before kedro-mlflow closes the run
    def after_pipeline_run(self) -> None:
        table = self.table()
        if table.empty:
            return
        text = format_table(table)
        log.info("Result of this run (also in result_table.csv on the MLflow run):")
        print(text, flush=True)  # plain stdout: the log handler would wrap a wide table
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.log_text(table.to_csv(index=False), "result_table.csv")


def format_table(table) -> str:
    """The result table as aligned text: accuracy as a percentage ± stderr, seconds rounded."""
    lines = []
    for row in table.to_dict("records"):
        acc = row["accuracy"]
        accuracy = "—" if acc != acc else f"{100 * acc:5.1f} % ± {100 * row['stderr']:.1f}"
        lines.append(
            {
                "run": row["run"],
                "accuracy": accuracy,
                "n_eval": "—" if row["n_eval"] is None else str(row["n_eval"]),
                "rounds": str(row["rounds"]),
                "trained": str(row["samples_trained"]),
                **{c: f"{row[c]:.0f}" for c, _ in STAGES},
                "generation_s": "—"
                if row["generation_s"] != row["generation_s"]
                else f"{row['generation_s']:.0f}",
            }
        )
    headers = list(lines[0])
    widths = {h: max(len(h), *(len(line[h]) for line in lines)) for h in headers}
    out = ["  ".join(h.ljust(widths[h]) for h in headers)]
    out += ["  ".join(line[h].ljust(widths[h]) for h in headers) for line in lines]
    return "\n".join(out)
