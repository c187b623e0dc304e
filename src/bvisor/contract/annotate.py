"""Field documentation: what the JSON Schemas and the spec reference say about a field.

``doc`` gives a field its description and, where ``contract/validate.py`` enforces a bound,
that bound as JSON Schema keywords (``minimum``, ``maxItems``, ``pattern``, …). The bounds
go into the schema only (msgspec's ``extra_json_schema``): strict decoding never checks them,
so validate.py stays the one authority and a bad value still gets its message there.
"""

import msgspec


def doc(description: str, **bounds: object) -> msgspec.Meta:
    """``Annotated[T, doc("...", maximum=N)]``: a described field, with the bounds the
    validator enforces on it as schema keywords."""
    return msgspec.Meta(description=description, extra_json_schema=bounds or None)
