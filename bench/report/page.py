"""report.md under construction: its paragraphs, tables and charts, and what it is drawn from."""

from __future__ import annotations

from pathlib import Path

from .charts import save
from .fmt import table


class Page:
    def __init__(self, out: Path, r: dict, proxy_off: bool):
        self.out = out  # report.md and the PNGs go here
        self.r = r  # the results (results.json)
        self.quick = bool(r.get("quick"))
        self.proxy_off = proxy_off  # the run was asked for section 7 (--proxy-off)
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        """A paragraph: its lines, then a blank line."""
        self.lines += [*lines, ""]

    def bullets(self, items) -> None:
        """A list, "- " before each item; nothing if there is none."""
        items = list(items)
        if items:
            self.add(*(f"- {x}" for x in items))

    def table(self, header: list[str], rows: list[list]) -> None:
        self.add(table(header, rows))

    def chart(self, fig, name: str, alt: str) -> None:
        """Save fig as out/name and show it here."""
        save(fig, self.out / name)
        self.add(f"![{alt}]({name})")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
