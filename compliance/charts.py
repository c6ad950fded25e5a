"""Charts drawn on the server as SVG (pygal): the dashboard serves them, the PDF reports embed them.

The SVG holds no script (pygal's tooltip config is removed) and links nothing outside itself, so
it renders the same in a browser image, inline in HTML, and in WeasyPrint.
"""

from collections.abc import Sequence
from datetime import date
from typing import NamedTuple

import pygal
from lxml import etree
from pygal.style import Style

from .overview import activity_by_day

# Allowed is the bulk of any day; refusals and failures are what an officer looks for, so they
# get the strong colours (Bootstrap's secondary, warning and danger).
ACTIVITY_STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#212529",
    foreground_strong="#212529",
    foreground_subtle="#dee2e6",
    font_family="DejaVu Sans, system-ui, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    value_font_size=10,
    colors=("#8da4bf", "#e8a317", "#dc3545"),
    guide_stroke_color="#dee2e6",
    major_guide_stroke_color="#ced4da",
    guide_stroke_dasharray="2,3",
    major_guide_stroke_dasharray="2,3",
    opacity="1",
    opacity_hover="0.85",
)
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


class ActivityBar(NamedTuple):
    """One bar of the activity chart: a day, month or year and its events by outcome."""

    label: str
    allowed: int
    denied: int
    failed: int


def activity_chart_svg(
    start: date,
    end: date,
    *,
    width: int = 960,
    height: int = 280,
    bars: Sequence[ActivityBar] | None = None,
    unit: str = "day",
) -> str:
    """Return an SVG bar chart of allowed, denied and failed events per day, `start` to `end`.

    `bars` (with their `unit`: day, month or year) replaces the per-day counts of the log: a report
    counts its own period's events, per month or year over a long period.
    """
    if bars is None:
        bars = [
            ActivityBar(f"{day.day:%m-%d}", day.allowed, day.denied, day.failed)
            for day in activity_by_day(start, end)
        ]
    chart = pygal.StackedBar(
        style=ACTIVITY_STYLE,
        width=width,
        height=height,
        show_legend=True,
        legend_at_bottom=True,
        legend_at_bottom_columns=3,
        x_label_rotation=0,
        show_minor_x_labels=False,
        x_labels_major_every=max(1, len(bars) // 10),
        truncate_label=-1,
        print_values=False,
        show_y_guides=True,
        margin=12,
        spacing=8,
        min_scale=2,
        max_scale=6,
        js=[],
        disable_xml_declaration=True,
        no_prefix=False,
        title=None,
    )
    chart.x_labels = [bar.label for bar in bars]
    chart.add("Allowed", [bar.allowed for bar in bars])
    chart.add("Denied", [bar.denied for bar in bars])
    chart.add("Failed", [bar.failed for bar in bars])
    tree = chart.render_tree()
    # pygal always writes its tooltip configuration as a script, and credits as comments; an
    # image for officers and regulators needs neither.
    for node in list(tree.iter(f"{{{SVG_NAMESPACE}}}script", "script", etree.Comment)):
        node.getparent().remove(node)
    # pygal builds its nodes without a namespace; the serialised SVG puts them in SVG's.
    for title in tree.iterchildren(f"{{{SVG_NAMESPACE}}}title", "title"):
        title.text = f"Access events per {unit}, {start:%Y-%m-%d} to {end:%Y-%m-%d}"
    return etree.tostring(tree, encoding="unicode")
