"""Pages read the catalog only through the read model and receive typed probe results: no page or view
module queries the store itself, or unpacks a stored result's dicts."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "pages").rglob("*.py"))
# the only modules that hold the store: the services (lifetime, cached lists) and the read model
STORE_HOLDERS = {"pages/ui/services.py", "pages/ui/reads.py"}
STORE_QUERY = re.compile(r"\bsvc\.store\.|\.execute\(|\.sql\(|import duckdb|^import store|^from store")
RESULT_DICTS = re.compile(r"\bunpack\(|\.summary\[|\.summary\.get\(|\.arrays\[|\.arrays\.get\(|builtin_probes\.convert")


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_query_the_store_only_through_the_read_model(path):
    rel = str(path.relative_to(ROOT))
    if rel in STORE_HOLDERS:
        return
    hits = [f"{rel}:{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if STORE_QUERY.search(line)]
    assert not hits, "query the store through pages/ui/reads.py:\n" + "\n".join(hits)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_receive_typed_results_never_stored_dicts(path):
    rel = str(path.relative_to(ROOT))
    hits = [f"{rel}:{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if RESULT_DICTS.search(line)]
    assert not hits, "use status.typed() (the probe kind's typed result):\n" + "\n".join(hits)
