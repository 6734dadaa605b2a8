"""The ``optileuk`` command line (typer). User mistakes end in one message and exit code 2."""

from __future__ import annotations

import functools
import gc
import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console

from optileuk.errors import ConfigError, OptileukError
from optileuk.registry import OPTIMIZERS
from optileuk.storage import DEFAULT_STORAGE

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Tune leukemia-microscopy pipelines with PSO, GA, salp swarm, sine-cosine and TPE; "
                       "every candidate is an Optuna trial.")
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)

StorageOpt = typer.Option(None, "--storage", help=f"Optuna storage URL (default: the study file's, else {DEFAULT_STORAGE})")


def user_errors(fn: Callable) -> Callable:
    """Print an :class:`OptileukError` as its message (no traceback) and exit with code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from optileuk.runner import RunFailed

        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo("interrupted: finished trials are saved; run the same command again to resume", err=True)
            raise typer.Exit(130)
        except RunFailed as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1)
        except OptileukError as exc:
            for line in str(exc).splitlines():
                typer.echo(f"error: {line}", err=True)
            raise typer.Exit(2)

    return wrapper


@app.command()
@user_errors
def run(
    study: Path = typer.Argument(..., help="study file (YAML)"),
    storage: Optional[str] = StorageOpt,
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="override budget.trials"),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="override the study seed"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                            help="evaluate on this Dask cluster: tcp://host:8786 or a scheduler file"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    rebuild_state: bool = typer.Option(False, "--rebuild-state",
                                       help="rebuild the optimizer's state by replaying the stored trials instead of "
                                            "reading the saved one (studies saved by optileuk before state-as-data)"),
) -> None:
    """Run (or resume) the study in STUDY until its budget is spent."""
    from optileuk.cli._run import run_study

    run_study(study, storage=storage, trials=trials, seed=seed, scheduler=scheduler, quiet=quiet, out=out, err=err,
              rebuild_state=rebuild_state)


@app.command("list")
@user_errors
def list_studies(storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help="Optuna storage URL")) -> None:
    """List the studies in a storage with their best values."""
    from optileuk.cli._inspect import list_table

    out.print(list_table(storage))


@app.command()
@user_errors
def compare(
    studies: list[Path] = typer.Argument(..., help="one comparison file (optimizers: [...]) or several study files"),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="runs per optimizer (default: the file's seeds, else 5)"),
    storage: Optional[str] = StorageOpt,
    name: Optional[str] = typer.Option(None, "--name", help="base of the run names <name>.<optimizer>.s<seed>"),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="override budget.trials of every run"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="runs side by side (default: CPU cores)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    rebuild_state: bool = typer.Option(False, "--rebuild-state", help="as for optileuk run"),
) -> None:
    """Run every optimizer on the same objective, split and budget, once per seed (resumable)."""
    from optileuk.cli._compare import compare_studies

    compare_studies(studies, seeds=seeds, storage=storage, name=name, trials=trials, jobs=jobs, quiet=quiet,
                    out=out, err=err, rebuild_state=rebuild_state)


@app.command()
@user_errors
def report(
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help="Optuna storage URL"),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="only studies whose names start with this"),
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="HTML file to write"),
    target: Optional[float] = typer.Option(None, "--target", help="value to reach (default: median final best)"),
) -> None:
    """Write one self-contained HTML report (plots, ranking, tests) of the compared runs in a storage."""
    from optileuk.report import write_report

    groups = write_report(storage, output, prefix=prefix, target=target)
    from optileuk.report import assessments
    from optileuk.storage import open_existing

    n = len(assessments(open_existing(storage), prefix))
    typer.echo(f"wrote {output} ({len(groups)} comparison(s), {sum(len(g.runs) for g in groups)} run(s)"
               + (f", {n} assessment(s)" if n else "") + ")", err=True)


@app.command()
@user_errors
def export(
    name: str = typer.Argument(..., help="study name"),
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help="Optuna storage URL"),
    fmt: str = typer.Option("yaml", "--format", help="yaml or json"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="file to write (default: print)"),
    top: int = typer.Option(1, "--top", min=1, help="export the K best trials (multi-objective: K points of the front)"),
    pick: Optional[str] = typer.Option(None, "--pick", help="multi-objective: 'knee' (default) or conditions such as "
                                       "'error<=0.05' choose the point of the Pareto front"),
    selection: Optional[str] = typer.Option(None, "--selection", help="which trial: best, one_se, race, anchored or "
                                            "ensemble:N (default: the study's selection)"),
) -> None:
    """Export the chosen config of study NAME, merged with its objective config, for training."""
    from optileuk.cli._inspect import export_text

    text = export_text(name, storage, fmt, top, pick, selection)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


@app.command()
@user_errors
def train(
    config: Path = typer.Argument(..., help="training config (what optileuk export writes)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="run folder (default: runs/<study>)"),
    rank: int = typer.Option(1, "--rank", min=1, help="train the R-th best config of an export made with --top"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Train the final model on training + validation data; score it once on the held-out test split."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from optileuk.cli._inspect import metrics_table
    from optileuk.train import load_training_config, train as train_final

    loaded = load_training_config(config, rank)  # every mistake in the file is reported before training
    with Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[what]}"),
                  TimeElapsedColumn(), console=err, disable=quiet) as bar:
        task = bar.add_task("train", total=None, what="")
        run_dir, metrics = train_final(config, output, rank=rank, loaded=loaded,
                                       on_step=lambda done, total, what: bar.update(task, completed=done, total=total, what=what))
    out.print(metrics_table(metrics, run_dir))


@app.command()
@user_errors
def assess(
    studies: list[Path] = typer.Argument(..., help="study files: the approaches to assess on the same data"),
    outer: int = typer.Option(5, "--outer", min=2, max=20, help="outer parts (nested cross-validation)"),
    storage: Optional[str] = StorageOpt,
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="seed of the outer parts and of every objective "
                                       "(default: the first study's)"),
    name: Optional[str] = typer.Option(None, "--name", help="name of the assessment (default: the studies' common prefix)"),
    pick: Optional[str] = typer.Option(None, "--pick", help="multi-objective studies: which point of each part's front "
                                       "('knee' or conditions, as optileuk export)"),
    references: Optional[Path] = typer.Option(None, "--references", help="YAML with references: [{label, params, "
                                              "note, study}]: fixed configs assessed the same way"),
    untuned: bool = typer.Option(False, "--untuned", help="also assess each study's objective at its defaults"),
    external: Optional[str] = typer.Option(None, "--external", help="another data set (folder or YAML spec): the best "
                                           "config found on all the data, trained once and scored on it"),
    selection: Optional[str] = typer.Option(None, "--selection", help="selection rules compared on each study's search, "
                                            "e.g. best,one_se,race,anchored,ensemble:5 (default: each study's own)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="run parts side by side on local Dask workers"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="run parts on this Dask cluster"),
    output: Path = typer.Option(Path("assess.json"), "-o", "--output", help="JSON file of everything, with the "
                                "pooled predictions"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Nested cross-validation: each study searched on K-1 parts, scored once on the held-out part; pooled."""
    from optileuk.cli._assess import assess_cli

    assess_cli(studies, k=outer, storage=storage, seed=seed, name=name, pick=pick, references=references,
               untuned=untuned, external=external, workers=workers, scheduler=scheduler, output=output, quiet=quiet,
               out=out, err=err, selection=selection)


@app.command()
@user_errors
def predict(
    run_dir: Path = typer.Argument(..., help="run folder optileuk train wrote (a model bundle)"),
    inputs: list[str] = typer.Argument(..., help="image files, folders (recursive; class folders and images/ + "
                                       "masks/ carry ground truth) or dataset specs (YAML: dataset: {type: ...})"),
    output: Path = typer.Option(..., "-o", "--output", help="folder to write predictions, masks and overlays into"),
    gallery: bool = typer.Option(False, "--gallery", help="also write gallery.html (thumbnails, classes, confidence)"),
    overlays: bool = typer.Option(True, "--overlays/--no-overlays", help="write each segmented image with its masks "
                                  "outlined (overlays/)"),
    strict: bool = typer.Option(False, "--strict", help="exit with code 2 when an image cannot be read"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="images read and applied at a time"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda:N"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="local Dask worker processes"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                            help="a Dask cluster: tcp://host:8786 or a scheduler file"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Apply the model in RUN_DIR to new images; write predictions.csv (masks, overlays, metrics.json)."""
    from optileuk.cli._predict import predict_cli

    predict_cli(run_dir, inputs, output, gallery=gallery, overlays=overlays, strict=strict, batch_size=batch_size,
                device=device, workers=workers, scheduler=scheduler, quiet=quiet, out=out, err=err)


@app.command()
@user_errors
def dashboard(
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help="Optuna storage URL"),
    port: int = typer.Option(8080, "--port"),
) -> None:
    """Open optuna-dashboard on the storage (127.0.0.1 only)."""
    try:
        import optuna_dashboard
    except ImportError:
        typer.echo("optuna-dashboard is not installed: pip install 'optileuk[dashboard]'", err=True)
        raise typer.Exit(1)
    from optileuk.storage import open_existing

    st = open_existing(storage)
    typer.echo(f"optuna-dashboard on http://127.0.0.1:{port} (Ctrl+C to stop)", err=True)
    optuna_dashboard.run_server(st, host="127.0.0.1", port=port)


@app.command()
def optimizers() -> None:
    """List the registered optimizers (built-ins and plug-ins)."""
    for name in OPTIMIZERS.names():
        obj = OPTIMIZERS.resolve(name) or OPTIMIZERS.resolve(name + ":x")
        takes = obj is not None and getattr(obj[0], "takes_argument", False)
        hint = f":{getattr(obj[0], 'argument', '<Module>.<Class>')}" if takes else ""
        shown = f"{name}[{hint}]" if takes and getattr(obj[0], "optional_argument", False) else f"{name}{hint}"
        out.print(f"{shown:28s} {getattr(obj[0], 'summary', '') if obj else ''}")


data_app = typer.Typer(no_args_is_help=True, help="Look at data: the synthetic generator and your own folders.")
app.add_typer(data_app, name="data")


@data_app.command("preview")
@user_errors
def data_preview(
    output: Path = typer.Option(Path("preview"), "-o", "--output", help="folder to write PNGs into"),
    study: Optional[Path] = typer.Option(None, "--study", help="preview the dataset of this study file's objective"),
    kind: str = typer.Option("crops", "--kind", help="synthetic: crops or fields"),
    per_class: int = typer.Option(6, "--per-class", min=1, help="images per class"),
    size: Optional[int] = typer.Option(None, "--size", min=16, help="synthetic: crop/field side in pixels"),
    difficulty: float = typer.Option(0.5, "--difficulty", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed", min=0),
    extra: bool = typer.Option(False, "--extra", help="synthetic: add neutrophils and red cells"),
) -> None:
    """Write sample images, their masks and a contact sheet (sheet.png) to a folder."""
    from optileuk.cli._data import write_preview
    from optileuk.data import SyntheticData, load_dataset

    if study is not None:
        from optileuk.config import load_study

        st = load_study(study)
        cfg = getattr(st.objective_config, "dataset", None)
        if cfg is None:
            raise ConfigError(f"{study}: objective '{st.objective_type}' has no dataset to preview")
    else:
        if kind not in ("crops", "fields"):
            raise ConfigError(f"--kind must be crops or fields, got {kind!r}")
        classes = ["normal", "L1", "L2", "L3"] + (["neutrophil", "rbc"] if extra else [])
        cfg = SyntheticData(type="synthetic", kind=kind, classes=classes, n_per_class=per_class,
                            size=size or (64 if kind == "crops" else 256), difficulty=difficulty, seed=seed)
    ds = load_dataset(cfg)
    sheet = write_preview(ds, output, per_class, tile=96 if kind == "crops" else 192)
    typer.echo(f"wrote {sum(1 for _ in output.glob('*.png'))} PNGs to {output}/ (contact sheet: {sheet})")


@data_app.command("audit")
@user_errors
def data_audit(
    dataset: str = typer.Argument(..., help="a folder (class folders, or images/ + masks/ + labels.csv), a YAML "
                                  "dataset spec or a study file"),
    outer: int = typer.Option(5, "--outer", min=2, max=20, help="outer parts the audit cross-validates on"),
    seed: int = typer.Option(0, "--seed", min=0),
    group_pattern: Optional[str] = typer.Option(None, "--group-pattern", help="class folders: regex of the group "
                                                "(patient, source image) in file names"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="also write the audit as JSON"),
) -> None:
    """Shortcuts in a data set: what models that cannot see the cell score; duplicates; class balance."""
    from optileuk.cli._assess import audit_cli

    audit_cli(dataset, k=outer, seed=seed, group_pattern=group_pattern, output=output, out=out, err=err)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """optileuk's own warnings (data left out, shares adjusted) as one line each, without Python's
    file and source line; every other warning as Python shows it."""
    from optileuk.data import DataWarning

    if issubclass(category, DataWarning):
        typer.echo(f"warning: {message}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def _spawned_workers_skip_the_script() -> None:
    """Local Dask workers are started by multiprocessing's spawn, which first re-runs the parent's
    main module in each worker. For the ``optileuk`` console script that is ``from optileuk.cli
    import main``: typer, rich and every command imported again in every worker (0.5 s of CPU each)
    for nothing. Naming ``optileuk.cli.__main__`` as the script's module makes spawn leave it out,
    as it does for ``python -m optileuk.cli``; a user's own script keeps its main module."""
    script = sys.modules.get("__main__")
    if script is not None and getattr(script, "__spec__", None) is None \
            and Path(getattr(script, "__file__", "") or "").name == "optileuk":
        script.__spec__ = importlib.util.find_spec("optileuk.cli.__main__")


def main() -> None:
    """The console script: a usage mistake (unknown option, missing argument, bad value) is one line
    naming the command's help, exit code 2 -- not click's multi-line box."""
    warnings.showwarning = _show_warning
    _spawned_workers_skip_the_script()
    try:  # newer typers carry their own copy of click
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover - older typers use click itself
        from click import exceptions as cx
    no_args = getattr(cx, "NoArgsIsHelpError", ())
    try:
        _run_app(cx, no_args)
    finally:
        # What is left is the interpreter's exit: its last garbage collections walk every object
        # of optuna, SQLAlchemy, Dask and pyswarms, 0.2 s of each run (docs/benchmarks.md). Frozen,
        # they are freed without that walk; everything was closed and flushed before this point.
        gc.freeze()


def _run_app(cx, no_args) -> None:
    try:
        code = app(standalone_mode=False)
    except cx.UsageError as exc:
        if no_args and isinstance(exc, no_args):  # ``optileuk`` alone: the help, as usual
            typer.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(2)
        where = exc.ctx.command_path if exc.ctx else "optileuk"
        typer.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(2)
    except cx.ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
