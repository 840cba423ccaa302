"""The web UI: server-rendered pages (Jinja templates, a little JavaScript, SVG charts
drawn on the server). Every page reads without JavaScript.

`ui_router` collects the pages of each section module (``home``, ``datasets`` …); a
section module defines ``register(router, ctx)``. `Pages` carries what handlers share:
the workspace, the templates, and `Pages.render`, which adds the signed-in token, the
CSRF token for forms and the navigation.
"""

from __future__ import annotations

from modelcycle.server.ui.core import Pages, ui_router

__all__ = ["Pages", "ui_router"]
