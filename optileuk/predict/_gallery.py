"""``optileuk predict --gallery``: one self-contained HTML page to look at the predictions.

A card per image (thumbnail, or the overlay of its masks; predicted class, confidence, truth when
known), sortable by confidence, filterable by predicted class, and the confusion matrix when the
inputs carry class truth. Images are inlined as PNG data; the page opens offline.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from optileuk.predict._write import Writer, confidence


def _png(array: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ccc;border-radius:6px;padding:6px;width:150px;font-size:12px}
.card img{width:140px;height:140px;object-fit:contain;background:#f4f4f4;image-rendering:pixelated}
.card.wrong{border-color:#d33;background:#fff4f4}
.bar{margin:1em 0}
table.cm{border-collapse:collapse;margin:1em 0}
table.cm td,table.cm th{border:1px solid #bbb;padding:3px 8px;text-align:right}
.name{overflow-wrap:anywhere;color:#555}
"""

_SCRIPT = """
function apply(){
  const cls=document.getElementById('filter').value, order=document.getElementById('sort').value;
  const box=document.getElementById('cards'), cards=[...box.children];
  cards.sort((a,b)=>order==='input'?(+a.dataset.i)-(+b.dataset.i):
    (order==='asc'?1:-1)*((+a.dataset.conf)-(+b.dataset.conf)));
  let shown=0;
  for(const c of cards){
    const on=cls==='*'||c.dataset.pred===cls; c.style.display=on?'':'none'; if(on)shown++; box.appendChild(c);
  }
  document.getElementById('shown').textContent=shown;
}
"""


def write_gallery(writer: Writer, metrics: dict[str, Any] | None, title: str) -> Path:
    """Write ``gallery.html`` into the output folder; return its path."""
    model, items, thumbs = writer.model, writer.items, writer.thumbs
    classify = model.task != "segmentation"
    cards = []
    for r in writer.ordered:
        if not r.ok or r.index not in thumbs:
            continue
        it = items[r.index]
        pred = model.classes[r.label] if classify else ""
        conf = confidence(r.scores, model.probabilities) if classify else 0.0
        wrong = classify and it.truth is not None and it.truth != pred
        lines = [f'<div class="name">{html.escape(it.name)}</div>']
        if classify:
            lines.append(f"<b>{html.escape(pred)}</b> {conf:.3f}")
        if it.truth is not None:
            lines.append(f"truth: {html.escape(it.truth)}")
        if r.index in writer.pixels:
            lines.append(f"nucleus {writer.pixels[r.index][0]} px")
        cards.append(f'<div class="card{" wrong" if wrong else ""}" data-i="{r.index}" data-pred="{html.escape(pred)}" '
                     f'data-conf="{conf:.6g}"><img alt="{html.escape(it.name)}" src="{_png(thumbs[r.index])}">'
                     f'<br>{"<br>".join(lines)}</div>')
    options = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in model.classes)
    what = "confidence: top probability" if model.probabilities else "confidence: margin of the top decision value"
    controls = (f'<div class="bar">class <select id="filter" onchange="apply()"><option value="*">all</option>{options}'
                f'</select> sort <select id="sort" onchange="apply()"><option value="input">input order</option>'
                f'<option value="asc">least confident first</option><option value="desc">most confident first</option>'
                f'</select> <span id="shown">{len(cards)}</span> shown ({what})</div>') if classify else ""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(cards)} image(s) predicted, {len(writer.skipped)} skipped"
             f"{' (see skipped.csv)' if writer.skipped else ''}.</p>", _confusion(metrics, model.classes),
             controls, f'<div class="cards" id="cards">{"".join(cards)}</div></body></html>']
    path = writer.out / "gallery.html"
    path.write_text("".join(parts))
    return path


def _confusion(metrics: dict[str, Any] | None, classes: list[str]) -> str:
    cls = (metrics or {}).get("classification")
    seg = (metrics or {}).get("segmentation")
    out = []
    if cls:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in classes)
        rows = "".join(f"<tr><th>{html.escape(c)}</th>{''.join(f'<td>{n}</td>' for n in row)}</tr>"
                       for c, row in zip(classes, cls["confusion_matrix"]))
        out.append(f'<h2>Confusion matrix</h2><p>balanced accuracy {cls["balanced_accuracy"]:.3f}, accuracy '
                   f'{cls["accuracy"]:.3f}, macro-F1 {cls["macro_f1"]:.3f} ({cls["n_test"]} images with a known class; '
                   f'rows: truth, columns: predicted)</p><table class="cm" id="confusion"><tr><th></th>{head}</tr>'
                   f"{rows}</table>")
    if seg:
        out.append(f'<p>Masks against the truth: Dice {seg["dice"]:.3f}, IoU {seg["iou"]:.3f} '
                   f'({seg["n_test"]} images)</p>')
    return "".join(out)
