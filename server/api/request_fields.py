"""Query parameters under the same rule as body fields: one the route does not declare is a 400 naming it.

Body fields are checked by the request models (``extra="forbid"``, :mod:`server.api.protocol`) and multipart fields by
:func:`server.api.files_api.strict_form`; this dependency, on every router of ours, does the same for the query
string (a misspelt ``limt`` must not silently list everything). All three answer with
:func:`server.errors.unrecognized_field`.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.utils import get_flat_dependant

from server.errors import unrecognized_field


async def strict_query(request: Request) -> None:
    """400 naming the first query parameter the matched route does not declare."""
    if not request.query_params:
        return
    declared = {param.alias for param in get_flat_dependant(request.scope["route"].dependant).query_params}
    for name in request.query_params:
        if name not in declared:
            takes = ", ".join(sorted(declared)) or "none"
            raise unrecognized_field(name[:64], f"This endpoint's query parameters: {takes}.")
