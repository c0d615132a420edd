"""Pairwise ranking (the seed's ImageRanker) through a live daemon, with a judge whose preferences
are known: a vision chat model behind the openai provider (the fake upstream of
``fake_services``) that always prefers the brighter image. The kept sets must be the brightest
candidates of each pool, the comparisons within the documented bound, and the judge's reasons in
the lineage, ``metadata.json`` and ``rankings.json``."""

from __future__ import annotations

import io

import httpx
import pytest
from loom.plugins.beam_search.ranking import comparison_bound
from PIL import Image, ImageStat

from tests.conftest import Daemon, write_config
from tests.integration.fake_services import FakeServices
from tests.integration.jobs_support import small, start, wait

N, M, ITERATIONS = 4, 2, 3
KEY = "sk-judge-Secret0123456789"

CONFIG = """
[daemon]
host = "127.0.0.1"

[routes]
chat = "bs-llm"
image = "bs-image"
score = "bs-scorer"
describe = "bs-describer"
judge = "bright-judge"

[plugins.openai.instances.fake]
base_url = "{url}"
api_key = {{ env = "T_JUDGE_KEY" }}

[[models]]
id = "bs-llm"
provider = "mock"
capabilities = ["chat"]

[[models]]
id = "bs-image"
provider = "mock"
capabilities = ["image"]

[[models]]
id = "bs-scorer"
provider = "mock"
capabilities = ["vision"]

[[models]]
id = "bs-describer"
provider = "mock"
capabilities = ["vision"]

[[models]]
id = "bright-judge"
provider = "openai"
capabilities = ["vision", "chat"]
options = {{ model = "judge" }}
"""


@pytest.fixture(scope="module")
def fake():
    with FakeServices() as services:
        yield services


@pytest.fixture(scope="module")
def daemon(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pairwise")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG.format(url=fake.url)), tmp / "data", env={"T_JUDGE_KEY": KEY})
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def run(daemon, fake):
    with httpx.Client(base_url=daemon.url, timeout=30) as client:
        before = len(fake.requests("/chat/completions"))
        job = start(client, small(beam_width=N, keep_top=M, iterations=ITERATIONS, ranking="pairwise"))
        done = wait(client, job["id"], timeout=120)
        assert done["state"] == "succeeded", done["error"]
        lineage = client.get(f"/v1/jobs/{job['id']}/lineage").json()
        bright = {}
        for n in lineage["nodes"]:
            png = client.get(n["image_url"]).content
            bright[n["id"]] = ImageStat.Stat(Image.open(io.BytesIO(png)).convert("L")).mean[0]
        meta = client.get(f"/v1/files/{done['output_dir']}/metadata.json").json()
        rankings = client.get(f"/v1/files/{done['output_dir']}/rankings.json").json()
    judged = len(fake.requests("/chat/completions")) - before
    return done, lineage, bright, meta, rankings, judged


def test_each_ranking_keeps_the_brightest_of_its_pool(run):
    done, lineage, bright, _, _, _ = run
    nodes = {n["id"]: n for n in lineage["nodes"]}
    kept_before: list[str] = []
    for k in range(ITERATIONS):
        pool = kept_before + [i for i, n in nodes.items() if n["iteration"] == k]
        expected = sorted(pool, key=lambda i: -bright[i])
        kept = sorted((i for i in pool if k in nodes[i]["kept_in"]), key=lambda i: -bright[i])
        assert kept == expected[:M], (k, kept, expected)
        kept_before = kept
    assert lineage["winner"] == max(bright, key=bright.get)
    assert done["result"]["winner"]["id"] == lineage["winner"]


def test_comparisons_stay_within_the_documented_bound(run):
    done, _, _, _, _, judged = run
    c = done["result"]["comparisons"]
    children = [N] + [M * (N // M)] * (ITERATIONS - 1)
    parents = [0] + [M] * (ITERATIONS - 1)
    bounds = [comparison_bound(p, n) for p, n in zip(parents, children)]
    assert c["bound_by_iteration"] == bounds == [5, 10, 10]
    assert all(0 < got <= bound for got, bound in zip(c["by_iteration"], bounds)), c
    # Every comparison was one call to the judge, and the judge decided every one.
    assert c["total"] == sum(c["by_iteration"]) and c["undecided"] == 0
    assert judged == c["total"]  # the judge model serves nothing else in this job


def test_the_judges_reasons_are_in_the_lineage_and_the_seeds_files(run):
    done, lineage, bright, meta, rankings, _ = run
    comparisons = [(n["id"], x) for n in lineage["nodes"] for x in n["comparisons"]]
    assert comparisons and all(x["decided_by"] == "judge" and "brighter" in x["reason"] for _, x in comparisons)
    for me, x in comparisons:
        assert (x["result"] == "win") == (bright[me] > bright[x["opponent"]])
    assert done["result"]["models"]["judge"] == "model:bright-judge"
    records = [c for it in meta["iterations"] for c in it["candidates"]]
    assert sum(len(c["comparisons"]) for c in records) == 2 * done["result"]["comparisons"]["total"]
    direct = [d for it in rankings["iterations"].values() for d in it["comparisons"]["directComparisons"]]
    assert len(direct) == done["result"]["comparisons"]["total"]
    assert all(d["winner"] in ("A", "B") and d["decidedBy"] == "judge" and d["reason"] for d in direct)
    # The seed's global ranking: the winner first, every candidate once.
    final = rankings["finalGlobalRanking"]
    assert final[0]["candidateId"] == lineage["winner"] and final[0]["globalRank"] == 1
    assert len({f["candidateId"] for f in final}) == len(final) == len(lineage["nodes"])
