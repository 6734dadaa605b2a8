"""The report: one self-contained HTML file (plotly.js inlined, works offline)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import html
import json
import warnings
from typing import Any

import numpy as np
import optuna
import plotly
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from optileuk.report._collect import Group, RunData
from optileuk.report._stats import Ranking, hit, rank
from optileuk.storage import redact

COLOURS = qualitative.Plotly + qualitative.D3


def _colour(i: int, alpha: float | None = None) -> str:
    c = COLOURS[i % len(COLOURS)]
    if alpha is None:
        return c
    r, g, b = (int(c[k:k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return html.escape(str(v))


SCORES = ("balanced_accuracy", "accuracy", "macro_f1", "dice", "iou", "ssim", "mean")


def _ci(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=420,
                      margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.18))
    return fig


CURVE_POINTS = 2000  # points per best-so-far curve (evenly spaced evaluations; exact values at those)


def best_so_far_figure(group: Group) -> go.Figure:
    fig = go.Figure()
    for i, lab in enumerate(group.labels):
        curves = [r.best_so_far() for r in group.of(lab)]
        n = max(len(c) for c in curves)
        at = np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int))  # a long run is sampled
        m = np.full((len(curves), len(at)), np.nan)
        for j, c in enumerate(curves):
            inside = at < len(c)
            m[j, inside] = c[at[inside]]
        x = at + 1
        with np.errstate(all="ignore"), _quiet():
            med, lo, hi = (np.nanpercentile(m, q, axis=0) for q in (50, 25, 75))
        if len(curves) > 1:
            fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line=dict(width=0), showlegend=False,
                                     hoverinfo="skip", legendgroup=lab))
            fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line=dict(width=0), fill="tonexty",
                                     fillcolor=_colour(i, 0.18), showlegend=False, hoverinfo="skip", legendgroup=lab))
        fig.add_trace(go.Scatter(x=x, y=med, mode="lines", name=f"{lab} (median of {len(curves)})",
                                 line=dict(color=_colour(i), width=2), legendgroup=lab))
    _reference_lines(fig, group)
    spread = " and interquartile range over seeds" if len(group.seeds) > 1 else ""
    what = "Hypervolume of the front so far" if group.multi else "Best value so far"
    fig = _layout(fig, f"{what}: median{spread}", "evaluations", _value_name(group))
    finals = [v for r in group.runs for v in r.values if not np.isnan(v)]
    if group.minimize and finals and min(finals) > 0:  # errors shrinking towards 0 read better on a log axis
        fig.update_yaxes(type="log", dtick="D2", tickformat=".2g")
    return fig


def finals_figure(group: Group) -> go.Figure:
    fig = go.Figure()
    for i, lab in enumerate(group.labels):
        runs = group.of(lab)
        fig.add_trace(go.Box(y=[r.final_best for r in runs], name=lab, boxpoints="all", jitter=0.3, pointpos=0,
                             marker_color=_colour(i), text=[f"seed {r.seed}" for r in runs]))
    _reference_lines(fig, group)
    what = "Final hypervolume" if group.multi else "Final best value"
    return _layout(fig, f"{what} per run (one point per seed)", "optimizer", _value_name(group))


def _reference_lines(fig: go.Figure, group: Group) -> None:
    """The comparison's references (fixed candidates scored once) as dashed horizontal lines."""
    for ref in group.references:
        fig.add_hline(y=ref.value, line_dash="dash", line_color="#444", line_width=1.5,
                      annotation_text=f"{ref.label} {ref.value:.4g}", annotation_position="top right")


def target_figure(group: Group, ranking: Ranking) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("by evaluations", "by wall time"))
    for i, lab in enumerate(group.labels):
        runs = group.of(lab)
        hits = [(hit(r.best_so_far(), ranking.target, group.minimize), r) for r in runs]
        evals = sorted(h + 1 for h, _ in hits if h is not None)
        secs = sorted(float(r.seconds[h]) for h, r in hits if h is not None)
        for col, xs, xmax in ((1, evals, max(r.n for r in runs)),
                              (2, secs, max(float(np.nanmax(r.seconds)) for r in runs))):
            x = [0.0] + list(xs) + [xmax]
            y = [0.0] + [(k + 1) / len(runs) for k in range(len(xs))] + [len(xs) / len(runs)]
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line_shape="hv", name=lab, legendgroup=lab,
                                     showlegend=col == 1, line=dict(color=_colour(i), width=2)), row=1, col=col)
    fig.update_yaxes(range=[0, 1.05], title_text="fraction of runs at target", row=1, col=1)
    fig.update_xaxes(title_text="evaluations", row=1, col=1)
    fig.update_xaxes(title_text="seconds", row=1, col=2)
    word = "<=" if group.minimize else ">="
    return _layout(fig, f"Runs reaching the target (best {word} {ranking.target:.6g})", "", "")


IMPORTANCE_TRIALS = 2000  # fANOVA on at most this many complete trials (evenly spread over the run)


def importance_figure(storage, run: RunData) -> tuple[go.Figure | None, str]:
    from optileuk.storage import read_trials

    c = run.columns
    complete = [int(n) for n, s in zip(c.number, c.state) if s == "COMPLETE"]
    picked = complete
    if len(complete) > IMPORTANCE_TRIALS:
        picked = [complete[i] for i in np.linspace(0, len(complete) - 1, IMPORTANCE_TRIALS).round().astype(int)]
    study = optuna.create_study(directions=run.directions)
    study.add_trials(read_trials(storage, run.study_id, numbers=picked))
    try:
        with _quiet():  # fANOVA as the title says (Optuna 5's default is PED-ANOVA), seeded
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as exc:  # e.g. fewer than two complete trials, or one parameter
        return None, f"no parameter importances for {run.name}: {exc}"
    if not imp:
        return None, f"no parameter importances for {run.name}: no parameter varied"
    names = list(imp)[::-1]  # most important on top
    fig = go.Figure(go.Bar(x=[imp[k] for k in names], y=names, orientation="h", marker_color=_colour(0),
                           text=[f"{imp[k]:.2f}" for k in names], textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    of = f"{len(picked):,} of {len(complete):,} complete trials" if len(picked) < len(complete) else "every complete trial"
    seen = {n for t in study.trials for n in t.params}
    left_out = sorted(seen - set(imp))  # conditional: not in every trial, so not fANOVA input
    if left_out:
        of += f"; conditional parameters left out: {', '.join(left_out)}"
    fig = _layout(fig, f"Parameter importances (fANOVA, {of}) of the best run, {run.name}", "importance", "")
    fig.update_layout(height=max(320, 40 + 28 * len(names)))
    return fig, ""


def pareto_figure(group: Group) -> go.Figure:
    """Per optimizer: the non-dominated trials of all its seeds, and (two objectives, several seeds)
    the median attainment surface -- what half of its runs reached (moocore's empirical attainment
    function at 50%)."""
    import moocore

    fig = go.Figure()
    dirs = group.runs[0].directions[:2]
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in dirs])
    for i, lab in enumerate(group.labels):
        runs = group.of(lab)
        pts = []
        for r in runs:
            pts += [tuple(v[:2]) for v in r.complete_values()]
        front = _pareto(np.array(pts), dirs) if pts else np.empty((0, 2))
        front = front[np.argsort(front[:, 0])] if len(front) else front
        fig.add_trace(go.Scatter(x=front[:, 0], y=front[:, 1], mode="lines+markers", line_shape="hv",
                                 name=f"{lab}: best of {len(runs)} seed(s)", marker=dict(color=_colour(i))))
        sets = [(j, r.points()[:, :2]) for j, r in enumerate(runs) if len(r.points())]
        if len(group.runs[0].directions) == 2 and len(sets) > 1:
            data = np.vstack([p for _, p in sets])
            ids = np.concatenate([np.full(len(p), j + 1) for j, p in sets])
            med = moocore.eaf(data, ids, percentiles=[50])[:, :2] * sign
            med = med[np.argsort(med[:, 0])]
            fig.add_trace(go.Scatter(x=med[:, 0], y=med[:, 1], mode="lines", line_shape="hv",
                                     line=dict(color=_colour(i), dash="dash"),
                                     name=f"{lab}: median attainment (half of the seeds reach it)"))
    cfg_names = (group.config.get("objectives") if group.config else None) or group.runs[0].metric_names
    x, y = (cfg_names or ["objective 0", "objective 1"])[:2]
    return _layout(fig, "Pareto fronts (two first objectives)", x, y)


def _pareto(points: np.ndarray, directions: list[str]) -> np.ndarray:
    from optileuk.storage import nondominated

    return points[nondominated(points, directions)]


def _value_name(group: Group) -> str:
    if group.multi:
        return "hypervolume (higher is better)"
    return f"objective value ({'lower' if group.minimize else 'higher'} is better)"


@contextlib.contextmanager
def _quiet():
    """Silence Optuna's experimental warnings and numpy's all-NaN warnings inside a block."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---- the page ------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1150px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:2px solid #ddd;padding-bottom:.3rem;margin-top:2.5rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:.9rem}
.figure{margin:1rem 0}.facts td{text-align:left}code{background:#f4f4f4;padding:0 .2rem}
.warning{background:#fff4e5;border-left:4px solid #f90;padding:.4rem .6rem}
"""


def _table(head: list[str] | None, rows: list[list[str]], cls: str = "") -> str:
    h = "<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}">{h}<tbody>{body}</tbody></table>'


def _figure(fig: go.Figure, fid: str, kind: str) -> str:
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=fid, config={"displaylogo": False})
    return f'<div class="figure" data-kind="{kind}">{div}</div>'


def group_section(storage, group: Group, gi: int, target: float | None) -> str:
    cfg = group.config
    parts = [f'<section id="g{gi}"><h2>{html.escape(group.base)}</h2>']
    facts = [["runs", f"{len(group.runs)} ({len(group.labels)} optimizer(s) × {len(group.seeds)} seed(s): "
                      f"{', '.join(map(str, group.seeds))})"],
             ["studies", ", ".join(html.escape(r.name) for r in group.runs[:6]) + (" ..." if len(group.runs) > 6 else "")],
             ["direction", ", ".join(group.runs[0].directions)]]
    if cfg:
        obj = cfg.get("objective", {})
        facts += [["objective", f"<code>{html.escape(json.dumps(obj)[:300])}</code>"],
                  ["search space", ", ".join(html.escape(k) for k in (cfg.get("search_space", {}).get("parameters") or {}))],
                  ["budget", html.escape(json.dumps(cfg.get("budget")))],
                  ["data seed", _fmt(cfg.get("objective_seed", cfg.get("seed")))]]
    parts.append(_table(None, facts, "facts"))
    if group.multi:
        names = (cfg.get("objectives") if cfg else None) or group.runs[0].metric_names or \
            [f"objective {i}" for i in range(len(group.runs[0].directions))]
        ref = ", ".join(f"{n} {v:.6g}" for n, v in zip(names, group.reference_point))
        parts.append(_table(None, [["hypervolume reference point", f"{html.escape(ref)} (fixed for this comparison: each "
                                    "objective's worst value over every run, plus 10% of its range; moocore)"]], "facts"))
        parts.append(_figure(pareto_figure(group), f"fig-{gi}-pareto", "pareto"))

    ranking = rank(group, target)
    parts.append(_figure(best_so_far_figure(group), f"fig-{gi}-curves", "best-so-far"))
    parts.append(_figure(finals_figure(group), f"fig-{gi}-finals", "final-best"))
    parts.append(_figure(target_figure(group, ranking), f"fig-{gi}-target", "time-to-target"))
    parts.append(ranking_html(group, ranking))
    best_run = min(group.runs, key=lambda r: r.final_best if group.minimize else -r.final_best)
    if group.multi:
        parts.append(f'<p class="note">Pick a point of a front for training: <code>optileuk export '
                     f'{html.escape(best_run.name)} --pick knee -o best.yaml</code> (or conditions such as '
                     f'<code>--pick "{html.escape(str((cfg.get("objectives") or ["error"])[0]))}&lt;=0.1"</code>), then '
                     '<code>optileuk train best.yaml</code>.</p>')
        return "".join(parts) + "</section>"
    fig, note = importance_figure(storage, best_run)
    if fig is not None:
        parts.append(_figure(fig, f"fig-{gi}-importance", "importance"))
    else:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    bt = best_run.best_trial()
    if bt is not None:
        parts.append(f"<h3>Best configuration ({html.escape(best_run.name)}, trial {bt.number}, "
                     f"value {bt.value:.6g})</h3>")
        parts.append(_table(["parameter", "value"], [[html.escape(k), _fmt(v)] for k, v in bt.params.items()]))
        scored = [[html.escape(k.replace("_", " ")), _fmt(bt.user_attrs[k]) + _ci(bt.user_attrs.get(f"{k}_ci95"))]
                  for k in SCORES if isinstance(bt.user_attrs.get(k), (int, float))]
        if scored:
            split = bt.user_attrs.get("split")
            parts.append(f"<h4>What it scored{' (' + html.escape(str(split)) + ')' if split else ''}</h4>")
            parts.append(_table(["metric", "value (bootstrap 95% interval)"], scored))
        parts.append(trust_html(storage, best_run.name))
        parts.append(f'<p class="note">Export it for training: <code>optileuk export {html.escape(best_run.name)} '
                     f'-o best.yaml</code> then <code>optileuk train best.yaml</code>.</p>')
    return "".join(parts) + "</section>"


def trust_html(storage, name: str) -> str:
    """How far the best can be trusted (its standard error, the defaults beside it, warnings) and what the
    study's selection rule chose instead of the argmin, and why."""
    from optileuk.export import selection_facts

    facts = selection_facts(storage, name)
    if facts is None:
        return ""
    t = facts["trust"]
    rows = []
    if t.get("value_se") is not None:
        rows.append(["standard error of the best", f"{t['value_se']:.4g} over {t.get('n_folds') or '?'} fold value(s)"])
    d = t.get("defaults")
    if d:
        pair = d.get("paired")
        rows.append(["the defaults (trial {})".format(d["trial"]), f"{d['value']:.6g}" + (
            f"; best − defaults {pair['difference']:+.4g} ± {pair['se']:.3g} ({html.escape(pair['how'])})" if pair else "")])
    rows.append([f"selection: {html.escape(facts['rule'])}", html.escape(facts["reason"])])
    out = ["<h4>Can the best be trusted?</h4>", _table(["", ""], rows)]
    out += [f'<p class="warning"><b>Warning:</b> {html.escape(w)}: prefer <code>selection: anchored</code> or '
            "<code>one_se</code>, or more data.</p>" for w in t.get("warnings", [])]
    return "".join(out)


def ranking_html(group: Group, r: Ranking) -> str:
    word = "≤" if group.minimize else "≥"
    rows = sorted(r.rows, key=lambda x: (x.mean_rank if x.mean_rank is not None else 0, x.median * (1 if group.minimize else -1)))
    body = [[html.escape(x.label), str(x.runs), _fmt(x.median), f"{_fmt(x.q25)} – {_fmt(x.q75)}", _fmt(x.best),
             _fmt(x.mean_rank, 3), f"{x.reached}/{x.runs}", _fmt(x.evals_to_target), _fmt(x.seconds_to_target, 3),
             _fmt(x.seconds, 3)] for x in rows]
    out = ["<h3>Ranking</h3>",
           _table(["optimizer", "runs", "median final best", "IQR", "best", "mean rank",
                   f"reached target ({word} {r.target:.6g})", "median evaluations to target",
                   "median seconds to target", "median seconds per run"], body)]
    for ref in group.references:
        scored = ", ".join(f"{k.replace('_', ' ')} {_fmt(ref.attrs[k])}" for k in SCORES
                           if isinstance(ref.attrs.get(k), (int, float)))
        out.append(f'<p class="reference">Reference {html.escape(ref.describe())}: value <b>{ref.value:.6g}</b>'
                   f'{" (" + html.escape(scored) + ")" if scored else ""}, scored once with the same objective and '
                   f'split; runs whose final best beats it: '
                   + ", ".join(f"{html.escape(lab)} {'%d/%d' % ref.beaten(group, lab)}" for lab in group.labels) + ".</p>")
    if r.friedman:
        out.append(f"<p>Friedman test over {len(r.blocks)} seeds × {len(r.rows)} optimizers: "
                   f"χ² = {r.friedman[0]:.4g}, <b>p = {r.friedman[1]:.4g}</b>.</p>")
    else:
        out.append(f'<p class="note">Friedman test: {html.escape(r.friedman_note)}.</p>')
    if r.pairs:
        out.append("<h3>Pairwise Wilcoxon signed-rank tests (paired by seed, Holm-corrected)</h3>")
        out.append(_table(["pair", "better (median of differences)", "p", "p (Holm)", "note"],
                          [[f"{html.escape(p.a)} vs {html.escape(p.b)}", html.escape(p.better or "–"), _fmt(p.p),
                            _fmt(p.p_holm), html.escape(p.note)] for p in r.pairs]))
    if r.min_p_note:
        out.append(f'<p class="note">{html.escape(r.min_p_note)}; run more seeds (<code>--seeds</code>) '
                   'for a test that can reach small p-values.</p>')
    out.append('<p class="note">Ranks are per seed (1 = best); the target defaults to the median final best '
               'over all runs (<code>--target</code> sets it). Wall times depend on the machine and on how many '
               'runs shared it.</p>')
    return "".join(out)


def render(storage, url: str, groups: list[Group], target: float | None = None, assessed: list | None = None) -> str:
    from optileuk.report._assess import assessment_section

    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    toc = "".join(f'<li><a href="#g{i}">{html.escape(g.base)}</a> ({len(g.runs)} run(s))</li>' for i, g in enumerate(groups))
    toc += "".join(f'<li><a href="#a{i}">assessment {html.escape(s["assessment"])}</a> ({len(s["approaches"])} '
                   f'approach(es) × {s["outer"]} outer parts)</li>' for i, s in enumerate(assessed or []))
    sections = "".join(group_section(storage, g, i, target) for i, g in enumerate(groups))
    sections += "".join(assessment_section(s, i) for i, s in enumerate(assessed or []))
    from optileuk import __version__

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>optileuk report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style>
<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script></head>
<body><h1>optileuk report</h1>
<p class="note">Storage <code>{html.escape(redact(url))}</code> · made {stamp} by optileuk {__version__} ·
comparisons: values are the objective's, on the split its runs were scored on (the search part; never the test
split); assessments: held-out figures of nested cross-validation.</p>
<ul>{toc}</ul>{sections}</body></html>
"""
