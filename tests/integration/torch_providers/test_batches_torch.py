"""A batch of embeddings on the tiny torch embedder (transformers, loaded by path), through the
``openai`` package: every vector comes back in OpenAI's output line format, and equals what the
embeddings route answers for the same input."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from tests.integration.batch_support import check_output, create, embedding_line, wait
from tests.openai_schema import require_document


def test_embeddings_batch_on_the_tiny_torch_embedder(torch_client):
    require_document()
    texts = [f"sentence number {i}" for i in range(6)]
    lines = [embedding_line(f"e{i}", "tiny-gpt2-encoder", t) for i, t in enumerate(texts)]
    done = wait(torch_client, create(torch_client, "/v1/embeddings", lines).id, timeout=300)
    assert done.status == "completed" and done.request_counts.completed == 6, done
    out, errors = check_output(torch_client, done, "/v1/embeddings")
    assert errors == []
    direct = torch_client.embeddings.create(model="tiny-gpt2-encoder", input=texts[2], encoding_format="float")
    got = next(x for x in out if x["custom_id"] == "e2")["response"]["body"]["data"][0]["embedding"]
    assert got == pytest.approx(direct.data[0].embedding, rel=1e-4, abs=1e-5)
