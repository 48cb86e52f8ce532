"""Config of the lifecycle reports (`lifecycle:`) and of the other reports (`reports:`).

```yaml
lifecycle:
  depreciation:                       # per asset kind; `default` for the other kinds
    default: {method: straight_line, life_years: 3, salvage: 0}
    laptop: {method: declining_balance, life_years: 4, salvage: "10%"}   # rate default: 2 / life_years
  refresh_after: {laptop: 4, desktop: 5, mobile: 3}                      # years
  replacement_cost: {laptop: 1500, "laptop/MacBook Pro": 2600}            # used when no recent purchase
  os:
    windows_edition: enterprise       # when the version does not say: pro (Home/Pro dates) or enterprise
    support: standard                 # or extended: count paid/LTS extended support as supported
    entries:                          # add or override release lines of the bundled data file
      - {family: macos, release: "14", end: 2026-11-30}
reports:
  coverage:                           # which kinds are expected to run an EDR agent / be MDM-managed
    edr_expected: [laptop, desktop, server, vm]
    mdm_expected: [laptop, desktop, mobile, tablet]
```
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DepreciationRule(_Model):
    """How one kind of asset loses book value: a method, a useful life and a salvage value.

    `salvage` is an amount in the asset's currency, or a share of its cost ("10%"). `rate` (declining balance
    only) is the yearly rate, default 2 / life_years (double declining balance)."""

    method: Literal["straight_line", "declining_balance"] = "straight_line"
    life_years: float = Field(default=3.0, gt=0, le=50)
    salvage: float | str = 0.0
    rate: float | None = Field(default=None, gt=0, le=1)

    @field_validator("salvage")
    @classmethod
    def _check_salvage(cls, v: float | str) -> float | str:
        if isinstance(v, str):
            m = _PERCENT.match(v)
            if not m or float(m.group(1)) > 100:
                raise ValueError(f"salvage {v!r} is not an amount or a percentage like '10%'")
        elif v < 0:
            raise ValueError("salvage must be 0 or more")
        return v

    @model_validator(mode="after")
    def _rate_only_for_declining(self) -> DepreciationRule:
        if self.rate is not None and self.method != "declining_balance":
            raise ValueError("rate applies to method declining_balance only")
        return self

    def salvage_of(self, cost: float) -> float:
        """The salvage value of an asset that cost `cost` (never more than the cost)."""
        if isinstance(self.salvage, str):
            m = _PERCENT.match(self.salvage)
            share = float(m.group(1)) / 100 if m else 0.0
            return round(cost * share, 2)
        return min(float(self.salvage), cost)

    def yearly_rate(self) -> float:
        """The declining-balance rate per year."""
        return self.rate if self.rate is not None else min(1.0, 2.0 / self.life_years)


class OsEntry(_Model):
    """An operating-system release line added by the operator, or replacing a bundled one (same family,
    release and edition)."""

    family: str = Field(pattern=r"^[a-z][a-z0-9-]*$")  # windows, windows-server, macos, ios, ubuntu, ...
    release: str  # as the bundled file names it: "11 23H2", "2022", "14", "22.04", "9"
    edition: Literal["pro", "enterprise", "ltsc", "iot"] | None = None  # Windows client lines only
    label: str | None = None
    end: date | None = None  # end of standard support; None: supported, no date announced
    extended_end: date | None = None  # end of paid / long-term extended support
    build: str | None = None  # Windows: the build number that identifies the release (e.g. "22631")


class OsConfig(_Model):
    """How operating systems are matched to their end of support."""

    windows_edition: Literal["pro", "enterprise"] = "pro"
    support: Literal["standard", "extended"] = "standard"
    entries: list[OsEntry] = Field(default_factory=list)


class LifecycleConfig(_Model):
    """Depreciation, refresh planning and OS end of support (issue #17)."""

    depreciation: dict[str, DepreciationRule] = Field(default_factory=dict)  # kind or "default" -> rule
    refresh_after: dict[str, float] = Field(default_factory=dict)  # kind or "default" -> years
    replacement_cost: dict[str, float] = Field(default_factory=dict)  # "kind" or "kind/model family" -> price
    os: OsConfig = Field(default_factory=OsConfig)

    @field_validator("refresh_after")
    @classmethod
    def _check_refresh(cls, v: dict[str, float]) -> dict[str, float]:
        for kind, years in v.items():
            if years <= 0 or years > 50:
                raise ValueError(f"refresh_after.{kind}: {years} is not a number of years between 0 and 50")
        return v

    @field_validator("replacement_cost")
    @classmethod
    def _check_prices(cls, v: dict[str, float]) -> dict[str, float]:
        for key, price in v.items():
            if price < 0:
                raise ValueError(f"replacement_cost.{key}: a price cannot be negative")
        return v

    def depreciation_rule(self, kind: str | None) -> DepreciationRule | None:
        """The rule of an asset kind: its own, else `default`, else None (not depreciated)."""
        return self.depreciation.get(kind or "") or self.depreciation.get("default")

    def refresh_years(self, kind: str | None) -> float | None:
        """The refresh age of an asset kind in years: its own, else `default`, else None (not planned)."""
        years = self.refresh_after.get(kind or "")
        return years if years is not None else self.refresh_after.get("default")


class CoverageConfig(_Model):
    """Which asset kinds each coverage gap applies to. An asset with no kind counts as expected, unless its
    os_name is a phone or tablet OS (iOS, iPadOS, Android), which counts as `mobile`."""

    edr_expected: list[str] = Field(default_factory=lambda: ["laptop", "desktop", "server", "vm"])
    mdm_expected: list[str] = Field(default_factory=lambda: ["laptop", "desktop", "mobile", "tablet"])


class ReportsConfig(_Model):
    """Report settings: coverage expectations."""

    coverage: CoverageConfig = Field(default_factory=CoverageConfig)
