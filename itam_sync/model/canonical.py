"""The canonical model: entities, their fields, what each field means and how it merges.

Every connector's mapping targets these fields; a mapping naming a field that is not here fails at load.
Extend the model here (add a field with a description), never fork it per connector.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EntityType(StrEnum):
    """The kinds of golden record the engine keeps."""

    ASSET = "asset"
    PERSON = "person"
    SUBSCRIPTION = "subscription"


class FieldKind(StrEnum):
    """How a field's value looks; decides normalisation checks and merge behaviour."""

    TEXT = "text"
    ENUM = "enum"
    DATE = "date"  # ISO date "YYYY-MM-DD"
    DATETIME = "datetime"  # ISO-8601 UTC "YYYY-MM-DDTHH:MM:SSZ"
    NUMBER = "number"
    INTEGER = "integer"
    BOOL = "bool"
    LIST = "list"  # a set of strings: merged as the union of every live source (e.g. MACs, tags)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One canonical field: its name, kind, description and, for enums, the allowed values."""

    name: str
    kind: FieldKind
    description: str
    choices: tuple[str, ...] = ()


ASSET_KINDS = ("laptop", "desktop", "server", "mobile", "tablet", "vm", "cloud_instance", "network",
               "peripheral", "domain", "certificate", "cloud_resource", "other")
LIFECYCLE_STATES = ("planned", "ordered", "in_stock", "deployed", "in_repair", "retired", "disposed")
PERSON_STATUSES = ("active", "suspended", "terminated")


def _fields(*specs: FieldSpec) -> dict[str, FieldSpec]:
    return {s.name: s for s in specs}


T, E, D, DT, N, INT, B, L = (FieldKind.TEXT, FieldKind.ENUM, FieldKind.DATE, FieldKind.DATETIME,
                             FieldKind.NUMBER, FieldKind.INTEGER, FieldKind.BOOL, FieldKind.LIST)

ASSET_FIELDS = _fields(
    FieldSpec("kind", E, "What sort of thing the asset is.", ASSET_KINDS),
    FieldSpec("serial_number", T, "Manufacturer serial number, normalised (upper case, no spaces)."),
    FieldSpec("hardware_uuid", T, "SMBIOS/hardware UUID, lower-case canonical form."),
    FieldSpec("imei", T, "IMEI of a mobile device, digits only."),
    FieldSpec("mac_addresses", L, "Hardware MAC addresses, 12 lower-case hex digits each."),
    FieldSpec("hostname", T, "Short host name, lower case (domain suffix removed)."),
    FieldSpec("fqdn", T, "Fully qualified domain name as reported, lower case."),
    FieldSpec("manufacturer", T, "Hardware manufacturer."),
    FieldSpec("model", T, "Hardware model."),
    FieldSpec("os_name", T, "Operating system family (Windows, macOS, Linux, iOS, Android, ChromeOS)."),
    FieldSpec("os_version", T, "Operating system version."),
    FieldSpec("cloud_provider", E, "Cloud the instance runs in.", ("aws", "azure", "gcp", "other")),
    FieldSpec("cloud_account", T, "Cloud account, subscription or project id."),
    FieldSpec("region", T, "Cloud region or zone."),
    FieldSpec("instance_id", T, "Cloud instance id (the strongest key for cloud machines)."),
    FieldSpec("lifecycle_state", E, "Where the asset is in its life.", LIFECYCLE_STATES),
    FieldSpec("assigned_to", T, "The person holding the asset: their e-mail (or employee id) as a reference."),
    FieldSpec("location", T, "Site, office or data centre."),
    FieldSpec("department", T, "Department the asset is charged to."),
    FieldSpec("purchase_date", D, "Date of purchase."),
    FieldSpec("purchase_cost", N, "Purchase cost in `currency`."),
    FieldSpec("currency", T, "ISO-4217 currency code of the cost."),
    FieldSpec("vendor", T, "Reseller or vendor the asset was bought from."),
    FieldSpec("order_number", T, "Purchase order number."),
    FieldSpec("warranty_end", D, "Last day of warranty cover."),
    FieldSpec("last_seen", DT, "Last time any source saw the asset active."),
    FieldSpec("mdm_managed", B, "Enrolled in and managed by an MDM."),
    FieldSpec("edr_protected", B, "Protected by an EDR agent."),
    FieldSpec("compliance_state", T, "Compliance state reported by the MDM."),
    FieldSpec("tags", L, "Free-form labels (cloud tags as key=value)."),
    FieldSpec("udid", T, "Apple UDID or other vendor device id that identifies the hardware."),
    FieldSpec("entra_device_id", T, "Microsoft Entra device id (Intune azureADDeviceId = Defender aadDeviceId)."),
    FieldSpec("ip_addresses", L, "IP addresses (private and public)."),
    FieldSpec("instance_type", T, "Cloud instance type / VM size / machine type."),
    FieldSpec("power_state", T, "Cloud power state as reported (running, stopped, deallocated, ...)."),
    FieldSpec("agent_version", T, "Version of the EDR or MDM agent."),
    FieldSpec("health_state", T, "Agent or device health as reported by the EDR/MDM."),
    FieldSpec("risk_level", T, "Risk level reported by the EDR (e.g. low, medium, high)."),
    FieldSpec("exposure_level", T, "Exposure level reported by the EDR / vulnerability management."),
    FieldSpec("asset_tag", T, "The organisation's asset tag (the label stuck on the device)."),
    FieldSpec("containment_state", T, "Network containment / quarantine state reported by the EDR."),
    FieldSpec("threat_state", T, "Active threat / infection state reported by the EDR."),
    FieldSpec("enrolled_at", DT, "When the device enrolled in the MDM."),
    FieldSpec("ship_date", D, "Date the manufacturer shipped the device."),
    FieldSpec("warranty_start", D, "First day of warranty cover."),
    FieldSpec("service_level", T, "Warranty / support service level."),
    FieldSpec("expires_on", D, "When a digital asset (domain, certificate) expires: its renewal date."),
    FieldSpec("issuer", T, "Certificate issuer."),
    FieldSpec("registrar", T, "Domain registrar."),
    FieldSpec("subject_names", L, "Certificate subject and SANs / domain name."),
)

PERSON_FIELDS = _fields(
    FieldSpec("employee_id", T, "HR employee number (the strongest person key)."),
    FieldSpec("email", T, "Primary e-mail / UPN, lower case."),
    FieldSpec("email_aliases", L, "Other e-mail addresses of the person, lower case."),
    FieldSpec("display_name", T, "Full name for display."),
    FieldSpec("department", T, "Department."),
    FieldSpec("title", T, "Job title."),
    FieldSpec("manager", T, "The manager: e-mail or employee id as a reference."),
    FieldSpec("location", T, "Office or site."),
    FieldSpec("status", E, "Employment/account status.", PERSON_STATUSES),
    FieldSpec("start_date", D, "First day of employment."),
    FieldSpec("end_date", D, "Last day of employment."),
    FieldSpec("idp_user_id", T, "The identity provider's user id (Okta id, Entra object id)."),
    FieldSpec("last_login", DT, "Last sign-in seen by the identity provider."),
)

SUBSCRIPTION_FIELDS = _fields(
    FieldSpec("product", T, "Product or SKU name."),
    FieldSpec("vendor", T, "Software vendor."),
    FieldSpec("sku_id", T, "Vendor SKU or plan id (a strong key when present)."),
    FieldSpec("seats_purchased", INT, "Seats bought."),
    FieldSpec("seats_assigned", INT, "Seats assigned to people."),
    FieldSpec("cost", N, "Cost per billing period in `currency`."),
    FieldSpec("currency", T, "ISO-4217 currency code."),
    FieldSpec("billing_period", E, "How often it is billed.", ("monthly", "annual", "other")),
    FieldSpec("renewal_date", D, "Next renewal date."),
    FieldSpec("owner", T, "Owner: e-mail of the responsible person."),
    FieldSpec("assignees", L, "People assigned a seat (e-mails)."),
)

FIELDS: dict[EntityType, dict[str, FieldSpec]] = {
    EntityType.ASSET: ASSET_FIELDS,
    EntityType.PERSON: PERSON_FIELDS,
    EntityType.SUBSCRIPTION: SUBSCRIPTION_FIELDS,
}


def field_spec(entity: EntityType, name: str) -> FieldSpec | None:
    """The spec of `name` on `entity`, or None when the model has no such field."""
    return FIELDS[entity].get(name)
