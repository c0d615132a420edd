"""What the beam search asks the LLM and the judge, and how it reads the answers.

Four kinds of LLM call, as in the seed: *expand* the user's prompt into a WHAT (content) or a HOW
(style) prompt, *combine* the two into one image prompt, *critique* a kept candidate for one
dimension from the describer's words, its scores and (pairwise ranking) the judge's reasons, and
*refine* a WHAT or HOW prompt by that dimension's critique. The judge (a vision chat model) is
asked the seed's ``compareTwo`` question about two images.
Each asks for JSON through ``response_format`` (``json_schema``), which grammar-constrained local
models and remote APIs honour; for weak models that still wander, every answer is parsed
leniently (code fences, prose around the object, a truncated string) and falls back to a
rule-based value, so a bad answer degrades one candidate instead of failing the job.
"""

from __future__ import annotations

import json
import re
from typing import Any

PROMPT_LIMIT = 600  # characters kept of any generated prompt

# No maxLength: llama.cpp turns a bounded string into hundreds of optional repetitions, which
# slows grammar-constrained sampling noticeably; long answers are cut when parsed instead.
PROMPT_SCHEMA = {
    "type": "object",
    "properties": {"prompt": {"type": "string", "minLength": 1}},
    "required": ["prompt"],
    "additionalProperties": False,
}
CRITIQUE_SCHEMA = {
    "type": "object",
    "properties": {
        "critique": {"type": "string", "minLength": 1},
        "recommendation": {"type": "string", "minLength": 1},
        "reason": {"type": "string"},
    },
    "required": ["critique", "recommendation", "reason"],
    "additionalProperties": False,
}

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "winner": {"type": "string", "enum": ["A", "B", "tie"]},
        "reason": {"type": "string"},
        "ranks": {
            "type": "object",
            "properties": {
                side: {
                    "type": "object",
                    "properties": {
                        "alignment": {"type": "integer", "enum": [1, 2]},
                        "aesthetics": {"type": "integer", "enum": [1, 2]},
                    },
                    "required": ["alignment", "aesthetics"],
                    "additionalProperties": False,
                }
                for side in ("A", "B")
            },
            "required": ["A", "B"],
            "additionalProperties": False,
        },
    },
    "required": ["winner", "reason", "ranks"],
    "additionalProperties": False,
}

# Different starting angles, so N expansions of one prompt do not all come out the same.
WHAT_ANGLES = (
    "the main subject: its appearance, pose and materials",
    "the setting around the subject and where things stand",
    "a moment of action or interaction in the scene",
    "small telling details a viewer would notice",
    "the subject seen from an unusual vantage point",
    "the scene at a different time of day or season",
)
HOW_ANGLES = (
    "photographic: lens, depth of field, natural light",
    "painterly: brushwork, palette, canvas texture",
    "cinematic: dramatic lighting, wide framing, colour grade",
    "illustrative: clean lines, flat colour, strong shapes",
    "moody: low key light, haze, muted colours",
    "bright and airy: soft light, pastel tones, open composition",
)

_SYSTEM_EXPAND = {
    "what": (
        "You write the CONTENT part (WHAT) of an image generation prompt. Keep the exact subject the "
        "user asked for; never change the topic. Describe only what is physically in the picture: "
        "subjects, their look and pose, objects, materials, actions, setting and where things are. "
        "Leave out style, lighting technique and rendering. Two or three plain sentences. "
        'Answer with JSON only: {"prompt": "..."}'
    ),
    "how": (
        "You write the STYLE part (HOW) of an image generation prompt. Describe how the picture "
        "looks, in concrete visual terms: lighting (direction, softness, shadows), composition and "
        "framing, colour palette, atmosphere and medium. Do not repeat the subject. Take cues from "
        "the mood of the user's request. Two or three plain sentences. "
        'Answer with JSON only: {"prompt": "..."}'
    ),
}
_SYSTEM_COMBINE = (
    "You merge a CONTENT description and a STYLE description into one prompt for an image model. "
    "Keep every concrete detail of both, drop repetition, and put the subject first. At most 80 "
    'words. Answer with JSON only: {"prompt": "..."}'
)
_SYSTEM_CRITIQUE = (
    "You review an image generated from a prompt, given what a vision model saw in it, two "
    "scores (alignment with the user's request, 0-100, and aesthetic quality, 0-10) and, when "
    "there are any, a judge's reasons from comparing it with other images. Give one actionable "
    "change to the {dim} prompt only ({focus}). Keep what works; fix what does not; stay "
    "faithful to the user's original request. High scores call for small refinements, low "
    "scores for bigger revisions. "
    'Answer with JSON only: {{"critique": "...", "recommendation": "...", "reason": "..."}}'
)
_SYSTEM_JUDGE = (
    "You compare two images (A, then B) made for the same request. Rank them on two factors, "
    "1 for the better image and 2 for the worse (both 1 if truly equal): alignment, how well the "
    "image shows what the request asks for; aesthetics, composition, lighting, colour and "
    "clarity. Name the winner, weighing alignment more, or tie. Give a short reason that "
    "mentions both factors. "
    'Answer with JSON only: {"winner": "A" | "B" | "tie", "reason": "...", '
    '"ranks": {"A": {"alignment": 1, "aesthetics": 2}, "B": {"alignment": 2, "aesthetics": 1}}}'
)
_SYSTEM_REFINE = {
    "what": (
        "You improve the CONTENT (WHAT) part of an image prompt using a critique. Apply the "
        "recommendation, keep what the critique says works, and stay faithful to the user's "
        'request. Output only the improved content description as JSON: {"prompt": "..."}'
    ),
    "how": (
        "You improve the STYLE (HOW) part of an image prompt using a critique. Apply the "
        "recommendation to lighting, composition, colour or atmosphere, keep what works, and do "
        'not add new subjects. Output only the improved style description as JSON: {"prompt": "..."}'
    ),
}
_FOCUS = {
    "what": "content: subjects, objects, actions, setting; judged mainly by alignment",
    "how": "style: lighting, composition, colour, atmosphere; judged mainly by aesthetics",
}


def response_format(name: str, schema: dict) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def _msgs(system: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def expand_messages(dimension: str, user_prompt: str, index: int) -> list[dict[str, str]]:
    angles = WHAT_ANGLES if dimension == "what" else HOW_ANGLES
    angle = angles[index % len(angles)]
    user = f'User request: "{user_prompt}"\nVariation {index + 1}; lean towards {angle}.'
    return _msgs(_SYSTEM_EXPAND[dimension], user)


def combine_messages(user_prompt: str, what: str, how: str) -> list[dict[str, str]]:
    user = f'User request: "{user_prompt}"\nCONTENT: {what}\nSTYLE: {how}'
    return _msgs(_SYSTEM_COMBINE, user)


def critique_messages(
    user_prompt: str,
    what: str,
    how: str,
    combined: str,
    alignment: float,
    aesthetic: float,
    description: str,
    dimension: str,
    iteration: int,
    judged: str = "",
) -> list[dict[str, str]]:
    system = _SYSTEM_CRITIQUE.format(dim=dimension.upper(), focus=_FOCUS[dimension])
    user = (
        f'Original request: "{user_prompt}"\n'
        f"WHAT: {what}\nHOW: {how}\nCOMBINED: {combined}\n"
        f"What the vision model sees: {description}\n"
        f"Alignment: {alignment:.1f}/100. Aesthetic: {aesthetic:.1f}/10. Iteration {iteration}."
    )
    if judged:
        user += f"\nWhat the judge said in comparisons: {judged}"
    return _msgs(system, user)


def judge_messages(user_prompt: str, first_uri: str, second_uri: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": _SYSTEM_JUDGE},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f'Request: "{user_prompt}"\nImage A:'},
                {"type": "image_url", "image_url": {"url": first_uri}},
                {"type": "text", "text": "Image B:"},
                {"type": "image_url", "image_url": {"url": second_uri}},
                {"type": "text", "text": "Compare A and B."},
            ],
        },
    ]


def refine_messages(
    dimension: str, user_prompt: str, current: str, critique: dict[str, str], child: int, children: int
) -> list[dict[str, str]]:
    user = (
        f'Original request: "{user_prompt}"\n'
        f"Current {dimension.upper()} prompt: {current}\n"
        f"Critique: {critique.get('critique', '')}\n"
        f"Recommendation: {critique.get('recommendation', '')}\n"
        f"Why: {critique.get('reason', '')}\n"
    )
    if children > 1:
        user += f"This is variation {child + 1} of {children}: make it distinct from the others."
    return _msgs(_SYSTEM_REFINE[dimension], user)


# --- reading answers ------------------------------------------------------------------------------

_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_LABEL = re.compile(r"^\s*(prompt|what|how|content|style|answer|output)\s*:\s*", re.I)


def _json_object(text: str) -> dict | None:
    text = _FENCE.sub("", text.strip())
    for candidate in (text, *re.findall(r"\{.*\}", text, re.S)):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _field(text: str, name: str) -> str | None:
    """A string field from a JSON answer; also from a truncated or wrapped one."""
    obj = _json_object(text)
    if obj is not None and isinstance(obj.get(name), str) and obj[name].strip():
        return obj[name].strip()
    m = re.search(rf'"{name}"\s*:\s*"((?:[^"\\]|\\.)*)', text, re.S)
    if m and m.group(1).strip():
        raw = m.group(1)
        try:
            return json.loads(f'"{raw}"').strip()
        except ValueError:
            return raw.replace('\\"', '"').strip()
    return None


def _clean(text: str) -> str:
    text = " ".join(text.split())
    return text[:PROMPT_LIMIT].strip()


def parse_prompt(text: str) -> str | None:
    """The ``prompt`` of a JSON answer, or the plain text of a model that ignored the format."""
    value = _field(text, "prompt")
    if value is None:
        stripped = _FENCE.sub("", text.strip())
        if stripped.startswith("{") or not stripped:
            return None
        value = _LABEL.sub("", stripped).strip().strip('"').strip()
    value = _clean(value)
    return value or None


def _rank(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value in (1, 2) else None


def parse_verdict(text: str, alpha: float) -> tuple[str | None, str, dict[str, dict[str, float]] | None] | None:
    """(winner "A" / "B" / None for a tie, reason, ranks) from a judge's answer; None when the
    answer cannot be read. As the seed's ``compareTwo``: the lower combined rank
    ``alpha * alignment + (1 - alpha) * aesthetics`` wins; equal ranks leave the named winner."""
    obj = _json_object(text)
    if obj is None:
        return None
    named = str(obj.get("winner", "")).strip().upper()
    named = {"A": "A", "B": "B", "IMAGE A": "A", "IMAGE B": "B"}.get(named, "TIE" if named == "TIE" else "")
    reason = _clean(str(obj.get("reason") or ""))
    ranks: dict[str, dict[str, float]] | None = None
    raw = obj.get("ranks")
    if isinstance(raw, dict):
        sides = {}
        for side in ("A", "B"):
            given = raw.get(side)
            r = given if isinstance(given, dict) else {}
            alignment, aesthetics = _rank(r.get("alignment")), _rank(r.get("aesthetics"))
            if alignment is not None and aesthetics is not None:
                sides[side] = {
                    "alignment": alignment,
                    "aesthetics": aesthetics,
                    "combined": round(alpha * alignment + (1 - alpha) * aesthetics, 6),
                }
        ranks = sides if len(sides) == 2 else None
    winner = named if named in ("A", "B") else None
    if ranks is not None and ranks["A"]["combined"] != ranks["B"]["combined"]:
        winner = "A" if ranks["A"]["combined"] < ranks["B"]["combined"] else "B"
    if not named and ranks is None:
        return None
    return winner, reason, ranks


def parse_critique(text: str) -> dict[str, str] | None:
    critique = _field(text, "critique")
    recommendation = _field(text, "recommendation")
    if not critique or not recommendation:
        return None
    return {
        "critique": _clean(critique),
        "recommendation": _clean(recommendation),
        "reason": _clean(_field(text, "reason") or ""),
    }


# --- fallbacks ----------------------------------------------------------------------------------


def fallback_expand(dimension: str, user_prompt: str, index: int) -> str:
    angles = WHAT_ANGLES if dimension == "what" else HOW_ANGLES
    angle = angles[index % len(angles)]
    return _clean(f"{user_prompt}, {angle}" if dimension == "how" else f"{user_prompt}; focus on {angle}")


def fallback_combine(what: str, how: str) -> str:
    return _clean(f"{what.rstrip('. ')}. {how}")


def rule_critique(alignment: float, aesthetic: float, dimension: str) -> dict[str, str]:
    """The seed's rule-based critique, for when the LLM's answer cannot be read."""
    relevant = alignment if dimension == "what" else aesthetic * 10
    area = "content" if dimension == "what" else "visual style"
    if relevant >= 80:
        return {
            "critique": f"The {area} works well; only small refinements are left.",
            "recommendation": f"Sharpen the details of the {dimension.upper()} prompt without changing its direction.",
            "reason": "Small refinements push a good result towards an excellent one.",
        }
    if relevant >= 60:
        return {
            "critique": f"The {area} is acceptable but could match the request better.",
            "recommendation": f"Make the {dimension.upper()} prompt more specific and concrete.",
            "reason": f"Specific wording improves {'alignment' if dimension == 'what' else 'aesthetics'}.",
        }
    return {
        "critique": f"The {area} falls short of the request.",
        "recommendation": f"Rework the {dimension.upper()} prompt around the user's request.",
        "reason": "A larger revision is needed to reach an acceptable result.",
    }


def fallback_refine(current: str, critique: dict[str, str]) -> str:
    return _clean(f"{current.rstrip('. ')}; {critique.get('recommendation', '')}")
