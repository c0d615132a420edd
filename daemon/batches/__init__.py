"""OpenAI's Batch API: a JSONL file of requests run as one durable, lowest-priority job.

- :mod:`.lines`: reading and checking an input file (OpenAI's error shapes).
- :mod:`.store`: batches and their lines in SQLite; a line's result is written when it ends, so a
  restarted daemon runs only the lines that have none.
- :mod:`.work`: the job that runs a batch (validate, run the lines model by model, finalize), and
  the ``Batch`` object OpenAI's clients read.
"""

from .store import BatchStore
from .work import Batches, BatchPipeline

__all__ = ["BatchPipeline", "BatchStore", "Batches"]
