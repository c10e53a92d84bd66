"""The operator's brand (``ui:``): their templates and static files first, ours for the rest."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader
from starlette.staticfiles import StaticFiles

from ..settings import UiSettings

STATIC_PREFIX = "/static"


def template_loader(ui: UiSettings, ours: Path) -> BaseLoader:
    """A template in ``ui.templates_dir`` replaces ours of the same name; ``{% extends %}`` and
    ``{% include %}`` go through the same lookup, so an override of base.html applies to every
    page, and an override of one page still extends our base.html."""
    folders = [ours] if ui.templates_dir is None else [ui.templates_dir, ours]
    return ChoiceLoader([FileSystemLoader(folder) for folder in folders])


def page_globals(ui: UiSettings) -> dict[str, str | None]:
    """What every page may show of the brand: base.html's header and ``<title>``."""
    logo = None if ui.logo is None else f"{STATIC_PREFIX}/{quote(ui.logo)}"
    return {"site_name": ui.site_name, "logo_url": logo}


def static_folders(ui: UiSettings, ours: Path) -> list[Path]:
    return [ours] if ui.static_dir is None else [ui.static_dir, ours]


class LayeredStatic(StaticFiles):
    """Starlette's StaticFiles over several folders, the first that has the file wins.

    Its own lookup does the safety: the request path is normalised, and a file whose real path
    (symbolic links resolved) leaves the folder it was found in is not served from that folder.
    Content types, ETag and Last-Modified (with 304 answers) are FileResponse's, as before.
    """

    def __init__(self, folders: Sequence[Path]) -> None:
        super().__init__(directory=folders[-1])
        self.all_directories = list(folders)

    def find(self, name: str) -> Path | None:
        """The file a request for ``/static/<name>`` is answered with, or None (a 404)."""
        try:
            found, status = self.lookup_path(os.path.normpath(name))
        except (OSError, ValueError):
            return None
        return Path(found) if status is not None and stat.S_ISREG(status.st_mode) else None


def static_app(ui: UiSettings, ours: Path) -> LayeredStatic:
    return LayeredStatic(static_folders(ui, ours))
