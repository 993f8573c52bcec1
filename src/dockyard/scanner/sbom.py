"""An image's inventory as a CycloneDX (1.6, JSON) software bill of materials, written by the
CycloneDX project's own library: the image is the BOM's subject, its OS and packages its components."""

from __future__ import annotations

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.bom_ref import BomRef
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from dockyard.scanner.inventory import Inventory

MEDIA_TYPE = "application/vnd.cyclonedx+json"


def cyclonedx_json(inventory: Inventory, image_name: str, image_digest: str) -> bytes:
    bom = Bom()
    subject = Component(
        name=image_name,
        version=image_digest,
        type=ComponentType.CONTAINER,
        bom_ref=BomRef(f"image:{image_digest}"),
    )
    bom.metadata.component = subject
    members: list[Component] = []
    if inventory.os is not None:
        members.append(
            Component(
                name=inventory.os.id,
                version=inventory.os.version_id or None,
                description=inventory.os.pretty_name,
                type=ComponentType.OPERATING_SYSTEM,
                bom_ref=BomRef(f"os:{inventory.os.id}:{inventory.os.version_id}"),
            )
        )
    seen: set[str] = set()
    for package in inventory.packages:
        purl = package.purl(inventory.os)
        if purl in seen:
            continue  # the same package found twice (a lock file and node_modules, say)
        seen.add(purl)
        properties = [Property(name="dockyard:package:type", value=package.kind)]
        if package.source_name and package.source_name != package.name:
            properties.append(Property(name="dockyard:package:source-name", value=package.source_name))
        if package.source_version and package.source_version != package.version:
            properties.append(Property(name="dockyard:package:source-version", value=package.source_version))
        if package.path:
            properties.append(Property(name="dockyard:location:path", value=package.path))
        if package.layer:
            properties.append(Property(name="dockyard:location:layer", value=package.layer))
        members.append(
            Component(
                name=package.name,
                version=package.version,
                type=ComponentType.LIBRARY,
                purl=PackageURL.from_string(purl),
                bom_ref=BomRef(purl),
                properties=properties,
            )
        )
    for member in members:
        bom.components.add(member)
    bom.register_dependency(subject, members)
    return JsonV1Dot6(bom).output_as_string(indent=None).encode()
