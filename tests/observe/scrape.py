"""Reading Prometheus' text format as a scraper does (prometheus_client.parser)."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def local() -> Samples:
    """This process' metrics, as its /metrics would answer them."""
    return parse(generate_latest(REGISTRY).decode())


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def label_values(samples: Samples, prefix: str = "stepup_") -> set[str]:
    return {
        value for (name, ls), _ in samples.items() if name.startswith(prefix) for _, value in ls
    }


def labelsets(samples: Samples, name: str) -> set[frozenset[tuple[str, str]]]:
    return {ls for (n, ls), v in samples.items() if n == name}
