"""A describer's tree as indented text: ``name: value`` per line, nested blocks indented by
two spaces, list items numbered ``[0]``, ``[1]``, ... A flag word's ``raw`` and its set bits
are summarised on one line (``0x...: INIT, MODE64BIT``)."""

from __future__ import annotations

from typing import Any

INDENT = "  "


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _is_flags(value: Any) -> bool:
    return (isinstance(value, dict) and "raw" in value
            and all(isinstance(v, bool) or k in ("raw", "reserved_bits_set")
                    for k, v in value.items()))


def _flags_line(value: dict[str, Any]) -> str:
    named = [k for k, v in value.items() if v is True]
    extra = value.get("reserved_bits_set")
    if extra:
        named.append("reserved bits " + ", ".join(map(str, extra)))
    return f"{value['raw']} ({', '.join(named) if named else 'none set'})"


def _lines(value: Any, depth: int) -> list[str]:
    pad = INDENT * depth
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if _is_flags(item):
                out.append(f"{pad}{key}: {_flags_line(item)}")
            elif isinstance(item, dict) and set(item) == {"value", "name"}:
                out.append(f"{pad}{key}: {_scalar(item['value'])} ({item['name']})")
            elif isinstance(item, list) and item and not any(
                    isinstance(v, dict | list) for v in item):
                out.append(f"{pad}{key}: {', '.join(_scalar(v) for v in item)}")
            elif isinstance(item, dict | list) and item:
                out.append(f"{pad}{key}:")
                out += _lines(item, depth + 1)
            elif isinstance(item, list | dict):
                out.append(f"{pad}{key}: (none)")
            else:
                out.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [pad + ", ".join(_scalar(v) for v in value)]
        for index, item in enumerate(value):
            if isinstance(item, dict) and all(not isinstance(v, dict | list)
                                              for v in item.values()):
                fields = ", ".join(f"{k} {_scalar(v)}" for k, v in item.items())
                out.append(f"{pad}[{index}] {fields}")
                continue
            out.append(f"{pad}[{index}]")
            out += _lines(item, depth + 1)
    else:
        out.append(pad + _scalar(value))
    return out


def render(tree: dict[str, Any]) -> str:
    """The text form of ``tree``, ending in a newline."""
    return "\n".join(_lines(tree, 0)) + "\n"
