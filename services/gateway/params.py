"""Path parameters, typed once: the id rules of libs/appspec.py, declared in the OpenAPI document.
A path id that breaks them names nothing that can exist, so it answers 404 like an unknown id
(errors.py maps the validation error), while an id in a body that breaks them is a 422."""
from __future__ import annotations

from typing import Annotated

from fastapi import Path

from libs.subjects import INSTANCE_RE, MAX_INSTANCE_ID, MAX_TOKEN, TOKEN_RE

_TOKEN = "lowercase letters, digits and '-', not at either end"

AppIdPath = Annotated[str, Path(max_length=MAX_TOKEN, pattern=TOKEN_RE.pattern,
                                description=f"App id: 1 to {MAX_TOKEN} {_TOKEN}.")]
HostIdPath = Annotated[str, Path(max_length=MAX_TOKEN, pattern=TOKEN_RE.pattern,
                                 description=f"Host id: 1 to {MAX_TOKEN} {_TOKEN}.")]
InstanceIdPath = Annotated[str, Path(max_length=MAX_INSTANCE_ID, pattern=INSTANCE_RE.pattern,
                                     description=f"Instance id: 1 to {MAX_INSTANCE_ID} {_TOKEN}.")]

# Token names (services/gateway/access.py TOKEN_NAME_RE, repeated here: libs cannot see it).
TokenNamePath = Annotated[str, Path(max_length=63, pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
                                    description="Token name: 1 to 63 lowercase letters, digits, '.', '_', '-'.")]

# The noun an error names for each path parameter ("app 'X' not found").
NOUNS = {"app_id": "app", "host_id": "host", "instance_id": "instance", "name": "token"}
