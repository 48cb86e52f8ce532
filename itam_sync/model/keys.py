"""Match-key kinds and their scope: what a key's value names, and whether two values contradict a match.

Identity resolution joins records that share a match key ("serial_number:C02FK1ABQ6L4"). What a shared or a
differing value means depends on what the value names, its *scope*:

=============  ===================================================  ===============  ==========================
scope          names                                                per thing        two different values
=============  ===================================================  ===============  ==========================
hardware       the physical machine: serial, SMBIOS UUID, IMEI,      one              two machines: the link is
               Apple UDID                                                             refused
instance       one cloud or virtual machine instance (instance id)  one              two VMs: refused
identity       a person's employee id, a subscription's SKU id      one              two things: refused
registration   one registration of the hardware with a service:     many over its    nothing (a re-imaged
               Entra device id, MDM enrolment, EDR agent, IdP        life             laptop has a new one)
               device id
network        a network interface (MAC); docks and USB adapters     several          nothing
               move between machines
address        a mailbox (e-mail); shared mailboxes exist           several          nothing
label          a descriptive name strong enough to join             several          nothing
               (subscription vendor + product)
weak           a name that is often reused (host name): joins only  one or more      nothing
               records that have no strong key, never merges
=============  ===================================================  ===============  ==========================

Only single-valued scopes (hardware, instance, identity) refuse a link. `BUILT_IN` is the table of the
engine's kinds; a connector adds its own by declaring `key_kinds = (KeyKind(...),)` on its class (a kind
reads one or more canonical fields), and `KeyKinds` holds the built-in table plus those.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from itam_sync.model.canonical import FIELDS, EntityType
from itam_sync.model.identifiers import normalize_mac

WEAK_PREFIX = "~"  # weak keys are stored as "~hostname:..." so they never sort or look like a strong key


class KeyScope(StrEnum):
    """What a key value names (see the module docstring)."""

    HARDWARE = "hardware"
    INSTANCE = "instance"
    IDENTITY = "identity"
    REGISTRATION = "registration"
    NETWORK = "network"
    ADDRESS = "address"
    LABEL = "label"
    WEAK = "weak"


# One value per thing: two holders with different values are two things.
SINGLE_VALUED: frozenset[KeyScope] = frozenset({KeyScope.HARDWARE, KeyScope.INSTANCE, KeyScope.IDENTITY})
# A thing reports a stable set of these (its NICs, its mailboxes): one source holding a shared value on two
# records that each hold one the other lacks is describing two things.
DISTINGUISHING: frozenset[KeyScope] = frozenset({KeyScope.NETWORK, KeyScope.ADDRESS})
# Strength order: lower ranks win "which key joined it" and are tried first.
SCOPE_RANK: dict[KeyScope, int] = {KeyScope.INSTANCE: 0, KeyScope.HARDWARE: 1, KeyScope.IDENTITY: 1,
                                   KeyScope.REGISTRATION: 2, KeyScope.NETWORK: 3, KeyScope.ADDRESS: 3,
                                   KeyScope.LABEL: 4, KeyScope.WEAK: 9}


@dataclass(frozen=True, slots=True)
class KeyKind:
    """One kind of match key: its name (the key's prefix), entity, scope and the canonical fields it reads."""

    name: str
    entity: EntityType
    scope: KeyScope
    fields: tuple[str, ...]
    description: str = ""

    @property
    def single_valued(self) -> bool:
        return self.scope in SINGLE_VALUED

    @property
    def weak(self) -> bool:
        return self.scope is KeyScope.WEAK


_ASSET, _PERSON, _SUB = EntityType.ASSET, EntityType.PERSON, EntityType.SUBSCRIPTION
_HW, _VM, _ONE = KeyScope.HARDWARE, KeyScope.INSTANCE, KeyScope.IDENTITY

BUILT_IN: tuple[KeyKind, ...] = (
    KeyKind("instance_id", _ASSET, _VM, ("instance_id",), "Cloud instance id: one per VM."),
    KeyKind("serial_number", _ASSET, _HW, ("serial_number",), "Manufacturer serial number."),
    KeyKind("hardware_uuid", _ASSET, _HW, ("hardware_uuid",), "SMBIOS UUID (either byte order)."),
    KeyKind("udid", _ASSET, _HW, ("udid",), "Apple UDID / hardware UUID."),
    KeyKind("imei", _ASSET, _HW, ("imei",), "IMEI of a phone or cellular tablet."),
    KeyKind("entra_device_id", _ASSET, KeyScope.REGISTRATION, ("entra_device_id",),
            "Microsoft Entra device id: one per registration; a re-enrolled laptop gets a new one."),
    KeyKind("mac", _ASSET, KeyScope.NETWORK, ("mac_addresses",), "MAC address of a network interface."),
    KeyKind("hostname", _ASSET, KeyScope.WEAK, ("hostname",), "Short host name (a weak key, when enabled)."),
    KeyKind("employee_id", _PERSON, _ONE, ("employee_id",), "HR employee number."),
    KeyKind("email", _PERSON, KeyScope.ADDRESS, ("email", "email_aliases"), "E-mail address (primary or alias)."),
    KeyKind("sku_id", _SUB, _ONE, ("sku_id",), "Vendor SKU / plan id."),
    KeyKind("product", _SUB, KeyScope.LABEL, ("product",), "Vendor + product name (subscriptions without a SKU id)."),
)


class KeyKindError(ValueError):
    """A key kind declaration that cannot work (unknown field, clash with another kind)."""


class KeyKinds:
    """The scope table: the built-in kinds plus kinds connectors declare. Looked up by (entity, kind name)
    and by (entity, canonical field)."""

    def __init__(self, extra: Iterable[KeyKind] = ()) -> None:
        self._by_name: dict[tuple[EntityType, str], KeyKind] = {}
        self._by_field: dict[tuple[EntityType, str], KeyKind] = {}
        for kind in BUILT_IN:
            self._add(kind)
        for kind in extra:
            known = self._by_name.get((kind.entity, kind.name))
            if known == kind:
                continue  # two connectors of one type declare the same kind
            if known is not None:
                raise KeyKindError(f"key kind {kind.name!r} of {kind.entity.value} is declared twice with different "
                                   f"scopes or fields ({known.scope.value} {known.fields} vs {kind.scope.value} "
                                   f"{kind.fields}); give the connector's kind another name")
            self._add(kind)

    def _add(self, kind: KeyKind) -> None:
        for f in kind.fields:
            if f not in FIELDS[kind.entity]:
                raise KeyKindError(f"key kind {kind.name!r} reads {f!r}, which is not a canonical {kind.entity.value} "
                                   f"field (fields are added in itam_sync/model/canonical.py)")
            other = self._by_field.get((kind.entity, f))
            if other is not None and other.name != kind.name:
                raise KeyKindError(f"field {f!r} of {kind.entity.value} already feeds key kind {other.name!r}")
            self._by_field[(kind.entity, f)] = kind
        self._by_name[(kind.entity, kind.name)] = kind

    def by_field(self, entity: EntityType, field: str) -> KeyKind | None:
        """The kind a canonical field feeds, or None when the field is not a key."""
        return self._by_field.get((entity, field))

    def get(self, entity: EntityType, name: str) -> KeyKind | None:
        return self._by_name.get((entity, name.lstrip(WEAK_PREFIX)))

    def of_key(self, entity: EntityType, key: str) -> KeyKind | None:
        """The kind of a key string ("mac:...", "~hostname:...")."""
        return self.get(entity, key_kind(key))

    def prefixes(self, entity: EntityType) -> dict[str, KeyKind]:
        """Key prefix ("mac", "~hostname") -> kind, for one entity type: the hot path's look-up table."""
        out: dict[str, KeyKind] = {}
        for (e, name), kind in self._by_name.items():
            if e is entity:
                out[(WEAK_PREFIX if kind.weak else "") + name] = kind
        return out

    def all(self) -> list[KeyKind]:
        return list(self._by_name.values())

    def scope(self, entity: EntityType, key: str) -> KeyScope:
        kind = self.of_key(entity, key)
        if kind is None:
            return KeyScope.WEAK if key.startswith(WEAK_PREFIX) else KeyScope.LABEL
        return kind.scope

    def entity_of_kind(self, name: str) -> list[EntityType]:
        """Entity types that have a kind of this name (a bare `identifiers block mac:...` needs the type)."""
        return [e for (e, n) in self._by_name if n == name.lstrip(WEAK_PREFIX)]


def key_kind(key: str) -> str:
    """The kind name of a key string, without the weak prefix: "~hostname:lt-1" -> "hostname"."""
    return key.split(":", 1)[0].lstrip(WEAK_PREFIX)


def key_value(key: str) -> str:
    return key.split(":", 1)[1] if ":" in key else key


class PatternError(ValueError):
    """An `identity.ambiguous_values` entry or an identifier on the command line that cannot be read."""


def parse_identifier(text: str, kinds: KeyKinds) -> tuple[str, bool]:
    """A configured or typed identifier as (key or key prefix, is_prefix).

    "mac:3c18a00b7c11", "serial_number:ABC", "email:it@example.com", "mac:3c18a0*" (a prefix), or a bare MAC
    or OUI in any spelling ("3C-18-A0-0B-7C-11", "3c:18:a0"), or a bare e-mail."""
    s = text.strip()
    if not s:
        raise PatternError("an empty identifier")
    prefix = s.endswith("*")
    s = s.rstrip("*")
    kind, sep, value = s.partition(":")
    if sep and kinds.entity_of_kind(kind):
        name = kind.lstrip("~")
        if name == "mac":
            value = _mac_text(value) or value.lower()
        elif name in ("email", "udid", "entra_device_id", "hostname", "hardware_uuid"):
            value = value.strip().lower()
        elif name == "serial_number":
            value = "".join(value.split()).upper()
        weak = "~" if name == "hostname" else ""
        return f"{weak}{name}:{value}", prefix
    mac = _mac_text(s)
    if mac is not None:
        return f"mac:{mac}", prefix or len(mac) < 12
    if "@" in s:
        return f"email:{s.lower()}", prefix
    raise PatternError(f"{text!r}: say which kind it is, e.g. mac:3c18a00b7c11, serial_number:ABC123, "
                       f"hardware_uuid:..., ~hostname:loaner-01, email:it@example.com (a trailing * makes it a prefix)")


def _mac_text(s: str) -> str | None:
    """12 hex digits of a MAC in any spelling, or 6-10 hex digits of an OUI / prefix; None if not hex."""
    full = normalize_mac(s)
    if full is not None:
        return full
    q = s.strip().lower().replace(":", "").replace("-", "").replace(".", "")
    if 6 <= len(q) < 12 and not q.strip("0123456789abcdef"):
        return q
    return None


def check_ambiguous_values(values: list[str]) -> list[str]:
    """Config check of `identity.ambiguous_values`: every entry readable (a kind a connector declares is checked
    when its run starts; a bare value must be a MAC, an OUI or an e-mail)."""
    kinds = KeyKinds()
    for v in values:
        kind, sep, _ = v.strip().partition(":")
        if sep and kind.lstrip(WEAK_PREFIX).replace("_", "").isalnum() and not kinds.entity_of_kind(kind):
            continue  # a connector's own kind, or a typo the run will name
        try:
            parse_identifier(v, kinds)
        except PatternError as exc:
            raise ValueError(str(exc)) from None
    return values
