"""How relevant a document is to a query, for the mock reranker: deterministic and explainable.

Text against text is the share of the query's words the document holds (word overlap, case
folded), so a test can predict the order. An image (a ``data:image/...`` URI) against a text is
the mock CLIP score of :func:`.vision.scores` (the text naming the image's colours raises it), and
two images compare by the cosine of their mock embeddings, mapped to 0..1. A score depends on the
query and that one document only, never on the others or their order.
"""

from __future__ import annotations

import re

from .images import decode_data_uri, decode_image, image_stats, is_image_data_uri
from .vectors import image_vector
from .vision import scores

_WORD = re.compile(r"\w+")
_DIMENSIONS = 64  # of the image vectors two images are compared by


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def relevance(query: str, document: str) -> float:
    """The score of ``document`` against ``query``, 0..1."""
    query_image, document_image = is_image_data_uri(query), is_image_data_uri(document)
    if query_image and document_image:
        a = image_vector(decode_image(decode_data_uri(query, param="query"), param="query"), _DIMENSIONS)
        b = image_vector(decode_image(decode_data_uri(document, param="documents"), param="documents"), _DIMENSIONS)
        return (1.0 + sum(x * y for x, y in zip(a, b, strict=True))) / 2.0
    if query_image or document_image:
        uri, text, param = (query, document, "query") if query_image else (document, query, "documents")
        data = decode_data_uri(uri, param=param)
        return scores(data, image_stats(decode_image(data, param=param)), text).clip
    wanted = words(query)
    return len(wanted & words(document)) / len(wanted) if wanted else 0.0
