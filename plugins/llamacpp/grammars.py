"""GBNF grammars that constrain sampling: JSON output (``response_format``) and tool calls.

JSON schemas become grammar rules through llama-cpp-python's own converter (``SchemaConverter``,
the port of llama.cpp's json-schema-to-grammar). One converter builds every rule of a request, so
a call grammar can hold several functions' argument schemas and the answer's JSON schema side
by side. The grammar is returned as GBNF text: plain data, for whatever runs the generation.

A call is written ``<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>`` with the
arguments constrained to the function's parameter schema, so even a tiny model calls a function
that exists with arguments that validate (within the schema subset the converter knows: types,
properties and required, enum and const, anyOf, local $ref, string lengths and patterns, array
sizes, integer bounds as in :class:`Converter`; not number bounds or string formats beyond
dates and uuids). A
forced call (``tool_choice`` required or named) is exactly one call; ``auto`` lets the model
write either calls (several when parallel calls are allowed) or its answer.

Imported from ``load`` on (it imports llama_cpp's grammar module).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from llama_cpp.llama_grammar import RESERVED_NAMES, BuiltinRule, SchemaConverter
from loom.sdk import UnsupportedParameter
from loom.sdk.toolcalls import CLOSE, OPEN
from loom.sdk.types import ChatCompletionRequest, JSONObjectFormat, JSONSchemaFormat, ResponseFormat

#: An answer that is not a call: anything that does not start like one.
FREE_TEXT = r"[^<\x00] [^\x00]*"


def _literal(text: str) -> str:
    """A GBNF string literal (JSON's escapes are GBNF's, \\uXXXX included)."""
    return json.dumps(text)


def _has_outside_ref(node: Any) -> bool:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return True
        return any(_has_outside_ref(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_outside_ref(v) for v in node)
    return False


#: Integer ranges up to this many values are written out as alternatives.
_MAX_ENUMERATED = 1000


#: A character of a JSON string. The converter's own (``[^"\\]``) lets a raw newline or other
#: control character into a string, which JSON forbids (RFC 8259 section 7): a 135M model sampling
#: prose into a string wrote one, and the answer was not JSON. llama.cpp's JSON_GBNF excludes them.
STRICT_CHAR = BuiltinRule(
    r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])', []
)


class Converter(SchemaConverter):
    """llama-cpp-python's converter, plus integer bounds, which it leaves as a TODO: a range of
    up to 1000 values is written out, and a lower bound of 0 or 1 alone (pydantic's ``ge=0``,
    ``PositiveInt``) rules out negatives (and zero). Other bounds are not enforced. Strings
    hold no raw control characters (:data:`STRICT_CHAR`)."""

    def _add_primitive(self, name, rule):
        return super()._add_primitive(name, STRICT_CHAR if name == "char" else rule)

    def visit(self, schema, name):
        if isinstance(schema, dict) and schema.get("type") == "integer" and not {"enum", "const"} & set(schema):
            rule = _integer_rule(schema)
            if rule is not None:
                rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
                return self._add_rule(rule_name, rule)
        return super().visit(schema, name)


def _integer_rule(schema: dict[str, Any]) -> str | None:
    lo = schema.get("minimum")
    if "exclusiveMinimum" in schema and isinstance(schema["exclusiveMinimum"], (int, float)):
        lo = int(schema["exclusiveMinimum"]) + 1
    hi = schema.get("maximum")
    if "exclusiveMaximum" in schema and isinstance(schema["exclusiveMaximum"], (int, float)):
        hi = -int(-schema["exclusiveMaximum"]) - 1
    if lo is None and hi is None:
        return None
    lo = None if lo is None else int(-(-lo // 1))  # ceil of a float bound
    hi = None if hi is None else int(hi // 1)
    if lo is not None and hi is not None and 0 <= hi - lo < _MAX_ENUMERATED:
        return "(" + " | ".join(f'"{v}"' for v in range(lo, hi + 1)) + ") space"
    if hi is None and lo == 0:
        return '("0" | [1-9] [0-9]{0,15}) space'
    if hi is None and lo == 1:
        return "[1-9] [0-9]{0,15} space"
    return None


class Rules:
    """The rules of one grammar, built by one converter."""

    def __init__(self) -> None:
        self.converter = Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)

    def schema(self, schema: dict[str, Any], name: str, *, param: str) -> str:
        """Rules for a JSON schema; returns the name of its top rule."""
        if _has_outside_ref(schema):
            # The converter would fetch an https $ref (it only asserts against it): refuse here.
            raise UnsupportedParameter("llamacpp: JSON schema $ref must point inside the schema ('#/...')", param=param)
        try:
            # resolve_refs rewrites every $ref in place: convert a copy, never the request's own.
            resolved = self.converter.resolve_refs(copy.deepcopy(schema), name)
            return self.converter.visit(resolved, name)
        except Exception as e:
            raise UnsupportedParameter(f"llamacpp cannot constrain output to this JSON schema: {e}", param=param) from e

    def add(self, name: str, rule: str) -> str:
        return self.converter._add_rule(name, rule)

    def text(self, root: str) -> str:
        self.add("root", root)
        return self.converter.format_grammar()


def _answer_rule(rules: Rules, response_format: ResponseFormat | None) -> str | None:
    """The rule an answer must follow (``response_format``), or None for free text."""
    if isinstance(response_format, JSONObjectFormat):
        return rules.schema({"type": "object"}, "answer", param="response_format")
    if isinstance(response_format, JSONSchemaFormat):
        schema = response_format.json_schema.schema or {"type": "object"}
        return rules.schema(schema, "answer", param="response_format")
    return None


def chat_grammar(request: ChatCompletionRequest) -> str | None:
    """The grammar for a chat request, or None when sampling is free."""
    rules = Rules()
    answer = _answer_rule(rules, request.response_format)
    mode = request.tool_mode()
    if mode == "none":
        return rules.text(answer) if answer is not None else None
    calls = []
    for i, function in enumerate(request.callable_tools()):
        args = rules.schema(function.schema(), f"tool-{i}-args", param=f"tools[{i}].function.parameters")
        head = _literal(f'{{"name": {json.dumps(function.name)}, "arguments": ')
        calls.append(rules.add(f"tool-{i}-call", f'{head} {args} "}}"'))
    call = rules.add("call", " | ".join(calls))
    block = rules.add("call-block", f"{_literal(OPEN + chr(10))} {call} {_literal(chr(10) + CLOSE)}")
    if mode in ("required", "named"):
        return rules.text(block)
    blocks = rules.add("call-blocks", f'{block} ("\\n" {block})*') if request.parallel_calls() else block
    return rules.text(f"{blocks} | {answer or rules.add('free-text', FREE_TEXT)}")
