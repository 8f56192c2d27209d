"""Argo's variable substitution: one pass of `{{tag}}` replacement (fasttemplate), plus the one
expression form our templates use, `{{=sprig.b64enc(<variable>)}}` (workflow/common/util.go)."""

from __future__ import annotations

import base64
import re
from typing import Any

from standin.argo.workflows.model import Unsupported, WorkflowError

_TAG = re.compile(r"\{\{(.*?)\}\}", re.S)
_B64 = re.compile(r"^=\s*sprig\.b64enc\(\s*([A-Za-z0-9_.\-]+)\s*\)\s*$")


def substitute(value: Any, scope: dict[str, str], where: str) -> Any:
    """Replace every {{tag}} in the strings of value (one pass, like Argo's fasttemplate)."""
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            tag = m.group(1).strip()
            if tag.startswith("="):
                expr = _B64.match(tag)
                if not expr:
                    raise Unsupported(f"{where}: expression {{{{{tag}}}}} (only sprig.b64enc(<variable>) is supported)")
                var = expr.group(1)
                if var not in scope:
                    raise WorkflowError(f"{where}: failed to evaluate expression: unknown name {var}")
                return base64.b64encode(scope[var].encode()).decode()
            if tag not in scope:
                raise WorkflowError(f"{where}: failed to resolve {{{{{tag}}}}}")
            return scope[tag]

        return _TAG.sub(repl, value)
    if isinstance(value, list):
        return [substitute(v, scope, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, scope, where) for k, v in value.items()}
    return value
