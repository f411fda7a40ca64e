"""The poison guard finds a command's consumer by NATS subject matching: ``*`` is one
token, a final ``>`` one or more (the usage batches' consumer filters one subject per tenant)."""

from apex_runtime.consumers import subject_matches


def test_wildcards_match_as_nats_matches_them() -> None:
    assert subject_matches("apex.cmd.usage.ingest.*", "apex.cmd.usage.ingest.ten_01")
    assert not subject_matches("apex.cmd.usage.ingest.*", "apex.cmd.usage.ingest")
    assert not subject_matches("apex.cmd.usage.ingest.*", "apex.cmd.usage.ingest.a.b")
    assert subject_matches("apex.cmd.>", "apex.cmd.usage.ingest.a")
    assert not subject_matches("apex.cmd.>", "apex.cmd")
    assert subject_matches("apex.cmd.run.start", "apex.cmd.run.start")
    assert not subject_matches("apex.cmd.run.start", "apex.cmd.run.cancel")
