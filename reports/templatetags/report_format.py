"""Number formats for the report: thousands separated, sizes in binary units."""

from django import template

register = template.Library()


@register.filter
def num(value: object) -> str:
    """Return a whole number with thousands separators (1,234,567); blanks stay blank."""
    if value is None or value == "":
        return ""
    try:
        return f"{int(value):,}"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(value)


@register.filter(name="bytes")
def bytes_(value: object) -> str:
    """Return a size in bytes as B, KiB, MiB, GiB or TiB."""
    if value is None or value == "":
        return "0 B"
    size = float(value)  # type: ignore[arg-type]
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
