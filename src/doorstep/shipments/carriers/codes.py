"""Per-carrier code tables: raw scan codes -> (Status, subtag), read from YAML.

Tables ship in this package (carriers/codes/*.yaml); more can be dropped into the folder named by
DOORSTEP_CARRIER_CODES_DIR without a code change. A file there for a carrier already known extends it and wins
on conflicting codes. Format:

    carrier: dhl                      # the slug used on shipments
    aliases: [dhl_express]            # other slugs that share the table
    codes:
      NB: {status: Delivered, subtag: Delivered_005}   # quote numeric or yes/no-like codes: "05"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from doorstep.shipments.model import Status, normalise_subtag

PACKAGE_DIR = Path(__file__).parent / "codes"


@dataclass(frozen=True)
class CodeMapping:
    status: Status
    subtag: str | None = None


@dataclass
class CodeTables:
    tables: dict[str, dict[str, CodeMapping]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def carrier_slug(self, carrier: str) -> str:
        slug = carrier.strip().lower().replace(" ", "_")
        return self.aliases.get(slug, slug)

    def lookup(self, carrier: str, code: str | None) -> CodeMapping | None:
        if code is None or code == "":
            return None
        table = self.tables.get(self.carrier_slug(carrier))
        if table is None:
            return None
        return (
            table.get(str(code).strip())
            or table.get(str(code).strip().upper())
            or table.get(str(code).strip().lower())
        )

    def load_file(self, path: Path) -> None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from exc
        carrier = data.get("carrier")
        if not isinstance(carrier, str) or not carrier:
            raise ValueError(f"{path}: `carrier:` (the carrier's slug) is required")
        slug = carrier.strip().lower()
        table = self.tables.setdefault(slug, {})
        for alias in data.get("aliases") or []:
            self.aliases[str(alias).strip().lower()] = slug
        codes = data.get("codes") or {}
        if not isinstance(codes, dict):
            raise ValueError(f"{path}: `codes:` must be a mapping of code -> {{status, subtag}}")
        for code, spec in codes.items():
            if isinstance(spec, str):
                spec = {"status": spec}
            if not isinstance(spec, dict) or "status" not in spec:
                raise ValueError(f"{path}: code {code!r} needs a `status`")
            try:
                status = Status.parse(str(spec["status"]))
                subtag = normalise_subtag(spec.get("subtag"), status)
            except ValueError as exc:
                raise ValueError(f"{path}: code {code!r}: {exc}") from None
            table[str(code).strip()] = CodeMapping(status, subtag)
        self.files.append(path)


def load_tables(extra_dir: str | Path | None = None) -> CodeTables:
    """The packaged tables, then every *.yaml in `extra_dir` (later files win on conflicting codes)."""
    tables = CodeTables()
    for path in sorted(PACKAGE_DIR.glob("*.yaml")):
        tables.load_file(path)
    if extra_dir:
        folder = Path(extra_dir)
        if not folder.is_dir():
            raise ValueError(f"DOORSTEP_CARRIER_CODES_DIR={folder} is not a folder")
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            tables.load_file(path)
    return tables


@lru_cache(maxsize=8)
def cached_tables(extra_dir: str = "") -> CodeTables:
    return load_tables(extra_dir or None)
