"""The checker on synthetic histories: clean ones pass, each kind of anomaly is caught."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from node.consume import replica_digest
from storage.config import LogConfig
from storage.log import TabletLog
from testkit.http import Answer
from tests.faults.answers import classify
from tests.faults.checker import (
    Attempt,
    Fault,
    FinalRecord,
    History,
    Read,
    ReplicaState,
    check,
    digest_of,
    recoveries,
)
from wire.batch import build_batch, iter_records


def clean_history(attempts_per_tablet: int = 5, tablets: int = 2) -> History:
    """Attempts of 1–3 values, all acknowledged, one failed and one unknown-but-written per
    tablet; readers saw everything; replicas agree."""
    history = History()
    for tablet in range(tablets):
        offset = 0
        final: list[FinalRecord] = []
        for n in range(attempts_per_tablet):
            values = tuple(f"t{tablet}-a{n}-{i}" for i in range(1 + n % 3))
            acked = tuple((tablet, offset + i) for i in range(len(values)))
            history.attempts.append(
                Attempt(
                    f"t{tablet}-a{n}",
                    tablet,
                    values,
                    "ok",
                    acked,
                    started=float(n),
                    finished=n + 0.5,
                )
            )
            final += [
                FinalRecord(offset + i, v, 1000 + offset + i, "k") for i, v in enumerate(values)
            ]
            offset += len(values)
        history.attempts.append(
            Attempt(
                f"t{tablet}-fail",
                tablet,
                (f"t{tablet}-fail-0",),
                "fail",
                error="503 not_enough_replicas",
            )
        )
        history.attempts.append(
            Attempt(f"t{tablet}-info", tablet, (f"t{tablet}-info-0",), "info", error="503 timeout")
        )
        final.append(FinalRecord(offset, f"t{tablet}-info-0", 1000 + offset, "k"))
        history.final[tablet] = final
        history.final_start[tablet] = 0
        history.reads.append(Read("r", tablet, 0, tuple((r.offset, r.value) for r in final[:3])))
        history.reads.append(Read("r", tablet, 3, tuple((r.offset, r.value) for r in final[3:])))
    history.replicas = {
        t: [ReplicaState(n, 0, len(recs), len(recs), digest_of(recs)) for n in ("n1", "n2")]
        for t, recs in history.final.items()
    }
    return history


def with_final(history: History, tablet: int, records: list[FinalRecord]) -> History:
    """``history`` with tablet's final read replaced, replicas agreeing with it."""
    final = {**history.final, tablet: records}
    assert history.replicas is not None
    replicas = {
        **history.replicas,
        tablet: [
            ReplicaState(s.node, 0, len(records), len(records), digest_of(records))
            for s in history.replicas[tablet]
        ],
    }
    return replace(history, final=final, replicas=replicas)


def test_a_clean_history_passes() -> None:
    report = check(clean_history())
    assert report.ok, report.table()
    assert report.ops == 14
    assert report.acked_attempts == 10
    assert report.acked == 2 * (1 + 2 + 3 + 1 + 2)
    assert report.failed_attempts == 2
    assert report.indeterminate_attempts == 2
    assert (report.indeterminate_present, report.indeterminate_absent) == (2, 0)
    assert report.final_records == report.acked + 2
    assert "verdict" in report.table() and "OK" in report.table()


def test_an_acknowledged_record_missing_from_the_final_read_is_lost() -> None:
    history = clean_history()
    records = [r for r in history.final[0] if r.value != "t0-a4-1"]
    records = [replace(r, offset=i) for i, r in enumerate(records)]
    report = check(with_final(history, 0, records))
    assert report.lost >= 1
    assert not report.ok
    assert any("t0-a4-1" in e for e in report.examples["lost"])


def test_an_acknowledged_record_at_another_offset_is_lost_and_divergent() -> None:
    history = clean_history()
    records = list(history.final[0])
    a, b = records[1], records[2]  # swap two values
    records[1], records[2] = replace(a, value=b.value), replace(b, value=a.value)
    report = check(with_final(history, 0, records))
    assert report.lost == 2
    assert report.divergent_offsets >= 2
    assert "found at" in report.examples["lost"][0]


def test_a_value_at_two_offsets_is_a_duplicate() -> None:
    history = clean_history()
    records = [*history.final[0], FinalRecord(len(history.final[0]), "t0-a1-0", 5, "k")]
    report = check(with_final(history, 0, records))
    assert report.duplicated == 1
    assert report.lost == 0


def test_an_indeterminate_write_present_twice_is_a_duplicate() -> None:
    history = clean_history()
    records = [*history.final[1], FinalRecord(len(history.final[1]), "t1-info-0", 5, "k")]
    report = check(with_final(history, 1, records))
    assert report.duplicated == 1


def test_an_indeterminate_write_absent_is_fine() -> None:
    history = clean_history()
    records = [r for r in history.final[1] if r.value != "t1-info-0"]
    history.reads = [r for r in history.reads if (r.tablet, r.asked) != (1, 3)]
    history.reads.append(Read("r", 1, 3, tuple((r.offset, r.value) for r in records[3:])))
    report = check(with_final(history, 1, records))
    assert report.ok, report.table()
    assert report.indeterminate_absent == 1


def test_an_offset_read_with_two_values_is_divergent() -> None:
    history = clean_history()
    history.reads.append(Read("r2", 0, 1, ((1, "t0-a4-0"),)))
    report = check(history)
    assert report.divergent_offsets == 1
    assert report.duplicated == 1  # t0-a4-0 was also seen at its real offset


def test_a_record_read_then_gone_vanished() -> None:
    history = clean_history()
    history.reads.append(
        Read("r2", 0, len(history.final[0]), ((len(history.final[0]), "t0-ghost-0"),))
    )
    history.attempts.append(Attempt("t0-ghost", 0, ("t0-ghost-0",), "info"))
    report = check(history)
    assert report.vanished == 1
    assert report.unexpected == 0


def test_a_value_never_written_is_unexpected() -> None:
    history = clean_history()
    records = [*history.final[0], FinalRecord(len(history.final[0]), "garbage", 5, "k")]
    report = check(with_final(history, 0, records))
    assert report.unexpected == 1


def test_a_definitely_failed_write_that_shows_up_is_aborted() -> None:
    history = clean_history()
    records = [*history.final[0], FinalRecord(len(history.final[0]), "t0-fail-0", 5, "k")]
    report = check(with_final(history, 0, records))
    assert report.aborted == 1
    assert "not_enough_replicas" in report.examples["aborted"][0]


def test_an_attempt_present_in_part_is_torn() -> None:
    history = clean_history()
    records = [r for r in history.final[0] if r.value != "t0-a2-2"]  # the last of its batch
    report = check(with_final(history, 0, records))
    assert report.torn == 1


def test_a_poll_that_skips_or_goes_back_is_a_read_anomaly() -> None:
    history = clean_history()
    history.reads.append(Read("r2", 0, 2, ((3, "t0-a2-0"), (4, "t0-a2-1"))))
    history.reads.append(Read("r3", 0, 4, ((4, "t0-a2-1"), (3, "t0-a2-0"))))
    report = check(history)
    assert report.read_anomalies == 2


def test_a_gap_in_the_final_read_is_a_read_anomaly() -> None:
    history = clean_history()
    records = list(history.final[1])
    records[2:] = [replace(r, offset=r.offset + 1) for r in records[2:]]
    report = check(with_final(history, 1, records))
    assert report.read_anomalies == 1


def test_replicas_that_disagree_are_caught() -> None:
    history = clean_history()
    assert history.replicas is not None
    good = history.replicas[0][0]
    history.replicas[0] = [good, replace(good, node="n2", digest="0" * 64)]
    history.replicas[1] = [
        history.replicas[1][0],
        replace(history.replicas[1][1], high_watermark=3),
    ]
    report = check(history)
    assert report.replica_divergence == 2
    assert not report.ok


def test_a_replica_that_cannot_answer_is_divergent() -> None:
    history = clean_history()
    assert history.replicas is not None
    history.replicas[0] = [history.replicas[0][0], ReplicaState("n2", error="503 corrupt")]
    report = check(history)
    assert report.replica_divergence == 1
    assert "corrupt" in report.examples["replica_divergence"][0]


def test_replicas_agreeing_with_each_other_but_not_with_the_final_read_are_divergent() -> None:
    history = clean_history()
    assert history.replicas is not None
    wrong = digest_of(history.final[0][:-1])
    history.replicas[0] = [replace(s, digest=wrong) for s in history.replicas[0]]
    assert check(history).replica_divergence == 1


def test_an_unreadable_tablet_is_an_anomaly_and_not_double_counted() -> None:
    history = clean_history()
    history.final[0] = []
    history.final_errors[0] = "503 corrupt_segment"
    report = check(history)
    assert report.unreadable_tablets == 1
    assert report.lost == 0
    assert not report.ok


def test_recovery_is_the_time_to_an_acknowledged_write_on_every_tablet() -> None:
    attempts = [
        Attempt("a", 0, ("a",), "ok", ((0, 0),), started=9.0, finished=9.1),
        Attempt("b", 0, ("b",), "info", started=10.0, finished=11.0),
        Attempt("c", 0, ("c",), "ok", ((0, 1),), started=11.0, finished=11.5),
        Attempt("d", 1, ("d",), "ok", ((1, 0),), started=10.2, finished=10.3),
        Attempt("e", 1, ("e",), "ok", ((1, 1),), started=20.0, finished=20.1),
    ]
    faults = [Fault("kill-leader", "n1", 10.0, 12.0), Fault("pause-leader", "n2", 19.0, 20.0)]
    found = recoveries(faults, attempts)
    assert found[0].seconds is not None and abs(found[0].seconds - 1.5) < 1e-9
    assert found[1].seconds is None  # tablet 0 never acknowledged again


def test_the_table_names_faults_and_examples() -> None:
    history = clean_history()
    history.faults.append(Fault("kill-leader", "n1", 0.5, 1.0))
    records = [*history.final[0], FinalRecord(len(history.final[0]), "garbage", 5, "k")]
    text = check(with_final(history, 0, records)).table("demo")
    assert "== demo ==" in text
    assert "kill-leader" in text
    assert "ANOMALIES FOUND" in text
    assert "garbage" in text


def test_the_digest_is_the_products_formula(tmp_path: Path) -> None:
    """digest_of over what the JSON API returns equals the node's own replica digest."""
    log = TabletLog.open(tmp_path / "t", LogConfig())
    try:
        rng = random.Random(7)
        for n in range(20):
            records = [
                (None if rng.random() < 0.3 else f"k{n}".encode(), f"v{n}-{i}é".encode())
                for i in range(rng.randint(1, 4))
            ]
            log.append_as_leader(build_batch(records, create_time_ms=1000 + n), 0)
        log.flush()
        log.set_high_watermark(log.end_offset)
        data = log.read_bytes(0, 1 << 20)
        final = [
            FinalRecord(
                r.offset,
                r.value.decode() if r.value is not None else "",
                r.timestamp,
                r.key.decode() if r.key is not None else None,
            )
            for r in iter_records(data)
        ]
        assert digest_of(final) == replica_digest(log, 0)["digest"]
    finally:
        log.close()


def test_answers_are_classified_per_the_api_contract() -> None:
    assert classify(Answer(200, {"offsets": []})) == "ok"
    assert classify(Answer(400, {"error": "bad_request"})) == "fail"
    assert classify(Answer(404, {"error": "not_found"})) == "fail"
    assert classify(Answer(503, {"error": "not_enough_replicas"})) == "fail"
    assert classify(Answer(503, {"error": "no_leader"})) == "fail"
    assert classify(Answer(503, {"error": "timeout"})) == "info"
    assert classify(Answer(503, {"error": "peer_unreachable"})) == "info"
    assert classify(Answer(500, {"error": "internal"})) == "info"
    assert classify(Answer(0, None, refused=True)) == "fail"
    assert classify(Answer(0, None, error="TimeoutError()")) == "info"


MUTATIONS = ("drop", "duplicate", "garbage", "swap", "ghost-read")


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), mutation=st.sampled_from(MUTATIONS), attempts=st.integers(3, 12)
)
def test_any_single_mutation_of_a_clean_history_is_caught(
    seed: int, mutation: str, attempts: int
) -> None:
    history = clean_history(attempts)
    assert check(history).ok
    rng = random.Random(seed)
    tablet = rng.randrange(2)
    records = list(history.final[tablet])
    i = rng.randrange(len(records) - 1)  # an acknowledged record (the last is the unknown one)
    end = len(records)
    if mutation == "drop":
        records = [replace(r, offset=k) for k, r in enumerate(records[:i] + records[i + 1 :])]
    elif mutation == "duplicate":
        records.append(replace(records[i], offset=end))
    elif mutation == "garbage":
        records[i] = replace(records[i], value=records[i].value + "\x00flipped")
    elif mutation == "swap":
        j = (i + 1) % (len(records) - 1)
        if records[i].value == records[j].value:
            return
        records[i], records[j] = (
            replace(records[i], value=records[j].value),
            replace(records[j], value=records[i].value),
        )
    else:  # a reader saw something the final state does not have
        history.reads.append(Read("rx", tablet, end, ((end, f"t{tablet}-a0-0"),)))
    mutated = with_final(history, tablet, records)
    assert not check(mutated).ok, mutation
