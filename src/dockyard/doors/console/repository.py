"""What every tab of a repository's pages shares (the header: name, URI, tabs), and the
push commands page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.core.registry.repositories import registry_host
from dockyard.doors.console.web import ErrorView, Page, Visit, error_status

SECTION = "repositories"


@dataclass(frozen=True)
class RepositoryView:
    """What the header of every tab shows; computed, so a tab needs no extra permission."""

    name: str
    uri: str
    registry: str


def repository_of(visit: Visit) -> RepositoryView:
    name = visit.request.path_params["name"]
    host = registry_host(visit.svc, visit.account_id, visit.caller.region)
    return RepositoryView(name=name, uri=f"{host}/{name}", registry=host)


def tab(visit: Visit, template: str, current: str, status: int = 200, **context: Any) -> Response:
    return visit.render(template, status, repo=repository_of(visit), tab=current, **context)


def refused(visit: Visit, exc: DockyardError, template: str, tab_name: str, **context: Any) -> Response:
    """The tab with the core's refusal; a page that cannot be shown at all (no such repository,
    or one the caller may not see) says so instead of looking empty."""
    status = error_status(exc)
    if visit.request.method == "GET" and status in (403, 404):
        return visit.refused(exc)
    return tab(visit, template, tab_name, status, error=ErrorView.of(exc), **context)


def tab_path(suffix: str) -> str:
    # "/-/" cannot occur in a repository name, so any name (slashes included) stays unambiguous.
    return "/repositories/{name:path}/-/" + suffix


# --- Push commands ------------------------------------------------------------------------------


def push_commands(endpoint: str, region: str, registry: str, name: str) -> list[tuple[str, str]]:
    """The login, build, tag and push commands for repository `name`, as (what it does, command)."""
    image = f"{registry}/{name}:latest"
    login = (
        f"aws ecr get-login-password --region {region} --endpoint-url {endpoint} | "
        f"docker login --username AWS --password-stdin {registry}"
    )
    return [
        ("Retrieve an authentication token and authenticate your Docker client to your registry.", login),
        (
            "Build your Docker image with the following command (skip this step if your image is already built).",
            f"docker build -t {name} .",
        ),
        (
            "After the build completes, tag your image so you can push it to this repository.",
            f"docker tag {name}:latest {image}",
        ),
        ("Push this image to your repository.", f"docker push {image}"),
    ]


async def push_commands_page(visit: Visit) -> Response:
    repo = repository_of(visit)
    endpoint = f"{visit.request.url.scheme}://{visit.request.url.netloc}"
    tls = visit.request.url.scheme == "https" or visit.svc.settings.scheme == "https"
    steps = push_commands(endpoint, visit.caller.region, repo.registry, repo.name)
    return tab(visit, "push_commands.html", "push-commands", steps=steps, tls=tls)


PAGES = [
    Page(tab_path("push-commands"), push_commands_page, section=SECTION),
]
