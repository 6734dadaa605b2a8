"""``optileuk predict``: progress with images per second, then what was written and scored."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from optileuk.errors import DataError


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f} images/s" if task.speed else "- images/s")


def predict_cli(run_dir: Path, inputs: list[str], output: Path, *, gallery: bool, overlays: bool, strict: bool,
                batch_size: int, device: str, workers: int | None, scheduler: str | None, quiet: bool, out: Console,
                err: Console) -> None:
    from optileuk.objectives import resolve_device
    from optileuk.predict import predict

    resolve_device(device)  # a device this machine does not have: one message before anything is read
    bar = Progress(TextColumn("[bold]predicting"), BarColumn(), MofNCompleteColumn(), _Rate(), TimeElapsedColumn(),
                   console=err, disable=quiet)
    task = bar.add_task("predict", total=None)
    started = []

    def on_start(where: str) -> None:  # the bundle and the inputs are checked: now the bar
        if not quiet:
            err.print(f"applying {run_dir} on {where}")
        bar.start()
        started.append(True)

    try:
        summary = predict(run_dir, inputs, output, gallery=gallery, overlays=overlays, batch_size=batch_size,
                          device=device, workers=workers, scheduler=scheduler, on_start=on_start,
                          on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    finally:
        if started:
            bar.stop()
    rate = summary.predicted / summary.seconds if summary.seconds > 0 else 0.0
    out.print(f"predicted {summary.predicted} of {summary.images} image(s) in {summary.seconds:.1f} s "
              f"({rate:.1f} images/s); wrote {', '.join(summary.written)} to {summary.out}/")
    for name, m in (summary.metrics or {}).items():
        if name == "classification":
            ci = m.get("balanced_accuracy_ci95")
            out.print(f"against the inputs' classes ({m['n_test']} images): balanced accuracy "
                      f"{m['balanced_accuracy']:.4f}"
                      + (f" (95% CI {ci[0]:.3f} to {ci[1]:.3f})" if ci else "") + f", accuracy {m['accuracy']:.4f}, "
                      f"macro-F1 {m['macro_f1']:.4f}")
        elif name == "segmentation":
            out.print(f"against the inputs' masks ({m['n_test']} images, {m['target']}): Dice {m['dice']:.4f}, "
                      f"IoU {m['iou']:.4f}, SSIM {m['ssim']:.4f}")
        elif name == "unknown_classes":
            err.print(f"warning: {m['images']} image(s) of classes the model does not know "
                      f"({', '.join(m['classes'])}) are left out of the metrics")
    if summary.skipped:
        message = (f"{summary.skipped} image(s) could not be read and were skipped: listed with the reason in "
                   f"{summary.out / 'skipped.csv'}")
        if strict:
            raise DataError(message + " (--strict)")
        err.print(f"warning: {message}")
