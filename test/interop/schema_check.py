"""Validates JSON values against protocol/schemas (draft-07), with the standard library only.

The generated types check field names and types but not patterns, lengths, bounds or `const`;
the vectors README asks that every response validate against its schema. This implements exactly
the keywords protocol/schemas uses and raises on any other, so that a schema growing a keyword
cannot be validated only in part without anyone noticing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from hellwall_client import json_equal

# Keywords that describe and do not constrain.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "examples", "definitions", "default", "tsType"})
_CHECKED = frozenset({"type", "const", "enum", "required", "properties", "additionalProperties", "minLength", "maxLength", "pattern", "minimum", "oneOf", "$ref", "items", "maxItems", "minItems", "maximum"})


class SchemaError(AssertionError):
    pass


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        # JSON Schema counts 1.0 as an integer; a bool is never a number.
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return {
        "string": lambda v: isinstance(v, str),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }[name](value)


def _ecma_pattern(pattern: str) -> "re.Pattern[str]":
    # In Python `$` also matches before a final newline; in ECMA-262 (JSON Schema's dialect) only
    # at the very end. The protocol's patterns end in `$`: anchor them for real.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


class Schemas:
    def __init__(self, protocol_dir: Path) -> None:
        self.dir = protocol_dir / "schemas"
        self._docs: Dict[str, Any] = {}
        index = json.loads((protocol_dir / "index.json").read_text("utf-8"))
        self.error_response = index["errorResponse"]
        self.responses = {c["code"]: c["response"] for c in index["commands"]}
        self.requests = {c["code"]: c["request"] for c in index["commands"]}
        # The errors each command may answer; framing errors and E_UNKNOWN_COMMAND belong to none.
        self.command_errors = {c["code"]: c["errors"] for c in index["commands"] if "errors" in c}

    def _doc(self, name: str) -> Any:
        if name not in self._docs:
            self._docs[name] = json.loads((self.dir / name).read_text("utf-8"))
        return self._docs[name]

    def validate_response(self, response: dict) -> None:
        """Raises SchemaError unless `response` fits the schema its status and code select."""
        if response.get("status") == "error":
            name = self.error_response
        else:
            code = response.get("code")
            if type(code) is not int or code not in self.responses:
                raise SchemaError(f"a non-error response must carry a known command code: {response!r}")
            name = self.responses[code]
        errors = self.errors(response, self._doc(name), name)
        code = response.get("code")
        if name == self.error_response and type(code) is int and code in self.command_errors:
            if response.get("error") not in self.command_errors[code]:
                errors.append(f"/error: {response.get('error')!r} is not among the errors index.json lists for command {code}")
        if errors:
            raise SchemaError(f"response does not match {name}: {'; '.join(errors)}")

    def errors(self, value: Any, schema: Any, doc: str, path: str = "") -> List[str]:
        if schema is True or schema == {}:
            return []
        if schema is False:
            return [f"{path or '/'}: no value allowed"]
        if "$ref" in schema:
            # draft-07: keywords beside $ref are ignored.
            target_doc, target = self._resolve(schema["$ref"], doc)
            return self.errors(value, target, target_doc, path)
        unknown = set(schema) - _ANNOTATIONS - _CHECKED
        if unknown:
            raise NotImplementedError(f"schema keyword(s) {sorted(unknown)} in {doc} are not implemented by schema_check.py")
        where = path or "/"
        out: List[str] = []
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_type_ok(value, t) for t in types):
                return [f"{where}: must be {'/'.join(types)}"]
        if "const" in schema and not json_equal(value, schema["const"]):
            out.append(f"{where}: must be {schema['const']!r}")
        if "enum" in schema and not any(json_equal(value, e) for e in schema["enum"]):
            out.append(f"{where}: must be one of {schema['enum']!r}")
        if isinstance(value, str):
            # Lengths in code points, as JSON Schema counts them (and as Python's len does).
            if "minLength" in schema and len(value) < schema["minLength"]:
                out.append(f"{where}: shorter than {schema['minLength']}")
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                out.append(f"{where}: longer than {schema['maxLength']}")
            if "pattern" in schema and not _ecma_pattern(schema["pattern"]).search(value):
                out.append(f"{where}: does not match {schema['pattern']}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                out.append(f"{where}: less than {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                out.append(f"{where}: more than {schema['maximum']}")
        if isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                out.append(f"{where}: fewer than {schema['minItems']} items")
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                out.append(f"{where}: more than {schema['maxItems']} items")
            if isinstance(schema.get("items"), dict):
                for i, item in enumerate(value):
                    out.extend(self.errors(item, schema["items"], doc, f"{path}/{i}"))
        if isinstance(value, dict):
            props = schema.get("properties", {})
            for key in schema.get("required", []):
                if key not in value:
                    out.append(f"{where}: missing required {key!r}")
            for key, item in value.items():
                if key in props:
                    out.extend(self.errors(item, props[key], doc, f"{path}/{key}"))
                elif schema.get("additionalProperties", True) is False:
                    out.append(f"{where}: property {key!r} not allowed")
                elif isinstance(schema.get("additionalProperties"), dict):
                    out.extend(self.errors(item, schema["additionalProperties"], doc, f"{path}/{key}"))
        if "oneOf" in schema:
            passing = [i for i, branch in enumerate(schema["oneOf"]) if not self.errors(value, branch, doc, path)]
            if len(passing) != 1:
                out.append(f"{where}: matches {len(passing)} of the oneOf branches, not exactly one")
        return out

    def _resolve(self, ref: str, doc: str) -> "tuple[str, Any]":
        file, _, pointer = ref.partition("#")
        target_doc = file or doc
        node = self._doc(target_doc)
        for part in filter(None, pointer.split("/")):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return target_doc, node


_default: Optional[Schemas] = None


def schemas(protocol_dir: Path) -> Schemas:
    global _default
    if _default is None:
        _default = Schemas(protocol_dir)
    return _default
