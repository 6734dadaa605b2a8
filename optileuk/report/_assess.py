"""The report's section for an ``optileuk assess``: per-part bars, pooled confusion matrix, paired
differences, optimism and the shortcut audit."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from optileuk.report._html import _colour, _figure, _layout, _table


def assessments(storage, prefix: str | None = None) -> list[dict[str, Any]]:
    """The summaries ``optileuk assess`` stored (the studies ``<base>.assess``)."""
    from optileuk.assess import SUMMARY_ATTR

    out = []
    for fs in storage.get_all_studies():
        if SUMMARY_ATTR in fs.user_attrs and (not prefix or fs.study_name.startswith(prefix)):
            out.append(fs.user_attrs[SUMMARY_ATTR])
    return sorted(out, key=lambda s: s["assessment"])


def _ci(m: dict, key: str) -> str:
    ci = m.get(f"{key}_ci95")
    return f"{m[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def parts_figure(s: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    parts = [f"part {i}" for i in range(s["outer"])]
    for i, label in enumerate(s["ranking"]):
        rows = s["approaches"][label]["parts"]
        fig.add_trace(go.Bar(x=parts, y=[r["heldout"] for r in rows], name=label, marker_color=_colour(i)))
    return _layout(fig, f"Held-out {s['metric'].replace('_', ' ')} per outer part", "outer part",
                   s["metric"].replace("_", " "))


def paired_figure(s: dict[str, Any]) -> go.Figure:
    pairs = s["paired"]
    names = [f"{p['a']} − {p['b']}" for p in pairs]
    fig = go.Figure(go.Scatter(x=[p["difference"] for p in pairs], y=names, mode="markers",
                               error_x=dict(type="data", symmetric=False,
                                            array=[p["ci95"][1] - p["difference"] for p in pairs],
                                            arrayminus=[p["difference"] - p["ci95"][0] for p in pairs]),
                               marker=dict(size=10, color=["#2a7" if p["resolved"] else "#999" for p in pairs]),
                               name="paired difference"))
    fig.add_vline(x=0, line_dash="dash", line_color="#888")
    fig = _layout(fig, "Paired differences on the same items (bootstrap 95% intervals)",
                  f"difference in {s['metric'].replace('_', ' ')}", "")
    fig.update_layout(height=max(260, 60 * len(pairs) + 120))
    return fig


def optimism_figure(s: dict[str, Any]) -> go.Figure:
    tuned = [lab for lab in s["ranking"] if s["approaches"][lab]["optimism"] is not None]
    fig = go.Figure(go.Bar(x=tuned, y=[s["approaches"][lab]["optimism"] for lab in tuned],
                           marker_color=[_colour(s["ranking"].index(lab)) for lab in tuned]))
    return _layout(fig, "Optimism: the search's own best figure minus the held-out one (mean over parts)", "approach",
                   f"{s['metric'].replace('_', ' ')} difference")


def confusion_figure(s: dict[str, Any], label: str) -> go.Figure:
    m = s["approaches"][label]["pooled"]
    classes = m["classes"]
    fig = go.Figure(go.Heatmap(z=m["confusion_matrix"], x=classes, y=classes, colorscale="Blues",
                               text=m["confusion_matrix"], texttemplate="%{text}", showscale=False))
    fig = _layout(fig, f"Pooled confusion matrix of {label} (rows: truth)", "predicted", "true")
    fig.update_yaxes(autorange="reversed")
    return fig


def audit_html(a: dict[str, Any] | None) -> str:
    if not a:
        return ""
    rows = [[html.escape(r["sees"]), f"{r['balanced_accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]",
             "<b>shortcut</b>" if r["flag"] else "no"] for r in a["shortcuts"].values()]
    dup = a["duplicates"]
    out = ["<h3>Shortcut audit (same outer parts)</h3>"]
    if rows:
        out.append(_table(["a model that sees", "balanced accuracy [95% CI]", "warning"], rows))
        out.append(f'<p class="note">Chance {a["chance"]:.3f}; a warning when the interval\'s lower bound is above '
                   "chance + 0.2.</p>")
    out.append(f'<p class="note">Duplicates across parts: {dup["exact_pairs_across_parts"]} identical, '
               f'{dup["near_pairs_across_parts"]} near ({html.escape(dup["near"])}). Classes: '
               + ", ".join(f"{html.escape(c)} {n}" for c, n in a["classes"].items()) + ".</p>")
    out += [f'<p class="warning"><b>Warning:</b> {html.escape(w)}</p>' for w in a["warnings"]]
    return "".join(out)


def rules_html(s: dict[str, Any]) -> str:
    """Selection rules compared on the same searches (``--selection``): pooled figure and optimism per rule."""
    rows = []
    for label in s["ranking"]:
        a = s["approaches"][label]
        if a.get("rule") and a.get("search") and label != a["search"]:
            rows.append([html.escape(a["search"]), html.escape(a["rule"]), _ci(a["pooled"], s["metric"]),
                         "–" if a["optimism"] is None else f"{a['optimism']:+.3f}"])
    if not rows:
        return ""
    return ("<h3>Selection rules on the same searches</h3>"
            + _table(["search", "rule", f"pooled {s['metric'].replace('_', ' ')} [95% CI]", "optimism"], rows)
            + '<p class="note">Each rule chose from the same inner search of each outer part; optimism is the '
              "search's figure of the chosen configuration minus its held-out one.</p>")


def assessment_section(s: dict[str, Any], ai: int) -> str:
    key = s["metric"]
    cols = ("balanced_accuracy", "accuracy", "macro_f1") if s["task"] == "classification" else ("dice", "iou", "ssim")
    rows = []
    for label in s["ranking"]:
        a = s["approaches"][label]
        rows.append([html.escape(label) + ("" if a["tuned"] else " (reference)"),
                     *(_ci(a["pooled"], c) for c in cols),
                     "–" if a["optimism"] is None else f"{a['optimism']:+.3f}", f"{a['seconds']:.0f}"])
    out = [f'<section id="a{ai}" data-kind="assessment"><h2>Assessment {html.escape(s["assessment"])}</h2>',
           f'<p>{s["outer"]} outer parts of {html.escape(str(s["data"]["name"]))} '
           f'({s["data"]["images"]} items, parts of '
           f'{", ".join(map(str, s["data"]["part_sizes"]))}; seed {s["seed"]}): every item scored once by a model '
           "searched and trained without it; intervals are bootstrap 95% over the pooled items.</p>",
           _table(["approach", *(f"{c.replace('_', ' ')} [95% CI]" for c in cols), "optimism", "seconds"], rows),
           f"<p><b>Which approach for these data:</b> {html.escape(s['verdict'])}</p>",
           _figure(parts_figure(s), f"fig-a{ai}-parts", "assess-parts")]
    if s["paired"]:
        out.append(_figure(paired_figure(s), f"fig-a{ai}-paired", "assess-paired"))
    if any(s["approaches"][lab]["optimism"] is not None for lab in s["ranking"]):
        out.append(_figure(optimism_figure(s), f"fig-a{ai}-optimism", "assess-optimism"))
    if s["task"] == "classification":
        out.append(_figure(confusion_figure(s, s["ranking"][0]), f"fig-a{ai}-confusion", "assess-confusion"))
    chosen = []
    for label in s["ranking"]:
        st = s["approaches"][label].get("stability")
        if st:
            text = "; ".join(f"{html.escape(n)} " + ("/".join(f"{html.escape(v)}×{c}" for v, c in x["chosen"].items())
                                                     if "chosen" in x else f"{x['min']:.3g}–{x['max']:.3g}")
                             for n, x in st.items())
            chosen.append([html.escape(label), text])
    if chosen:
        out.append("<h3>Configs chosen per part (is the choice stable?)</h3>" + _table(["approach", "chosen"], chosen))
    out.append(rules_html(s))
    dup = s["data"].get("duplicates")
    if dup and dup.get("merged_images"):
        out.append(f'<p class="note">Duplicates merged into one group before any split: {dup["merged_images"]} '
                   f'images ({dup["exact_sets"]} set(s) of identical images, {dup["near_pairs"]} near-identical '
                   "pair(s)).</p>")
    out.append(audit_html(s.get("audit")))
    out.append(f'<p class="note">Value: held-out {html.escape(key.replace("_", " "))}; written by '
               f'<code>optileuk assess</code> into {html.escape(s["storage"])}.</p></section>')
    return "".join(out)
