"""The command line: exit codes, messages, --help everywhere, and a cheap `import llmrca`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmrca.cli import build_parser, main

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "incidents"


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "cli.duckdb"
    monkeypatch.setenv("LLMRCA_DB", str(path))
    return path


def _commands(parser, prefix=()):
    """Every (sub)command path of the parser."""
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _commands(sub, (*prefix, name))


def test_every_command_has_help(capsys):
    commands = list(_commands(build_parser()))
    assert ("ingest",) in commands and ("incidents", "show") in commands
    for command in commands:
        with pytest.raises(SystemExit) as info:
            main([*command, "--help"])
        assert info.value.code == 0, command
        assert "usage: llmrca" in capsys.readouterr().out


def test_ingest_list_show_and_exit_codes(db, capsys):
    assert main(["init"]) == 0
    assert main(["ingest", str(SAMPLES / "INC-0001")]) == 0
    out = capsys.readouterr().out
    assert "interactions.jsonl [llmrca]: 6 read, 6 new, 0 merged, 0 unchanged, 0 rejected" in out
    assert "logs.jsonl: 3000 read, 3000 new, 0 unchanged, 0 rejected" in out
    assert "interactions: 6 offending, 0 context" in out

    assert main(["incidents", "list"]) == 0
    out = capsys.readouterr().out
    assert "INC-0001" in out and "jailbreak" in out

    assert main(["incidents", "show", "INC-0001"]) == 0
    out = capsys.readouterr().out
    assert "per model version:" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()
             if line.startswith((" assistant-v", "assistant-v"))}
    assert lines["assistant-v2"][0] == "6"          # the six offending interactions
    assert int(lines["assistant-v1"][1]) + int(lines["assistant-v2"][1]) == 3000

    assert main(["incidents", "show", "INC-9999"]) == 1
    err = capsys.readouterr().err
    assert "incident 'INC-9999' is not in the store; known: INC-0001" in err


def test_bad_input_exits_1_with_file_line_field(db, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "incident.yaml").write_text(
        "id: X-1\ntitle: t\ndetected_at: 2026-01-01T00:00:00Z\ncategory: privacy\n")
    (bundle / "logs.jsonl").write_text('{"timestamp": "2026-01-01T00:00:00Z"}\n{"level": "info"}\n')
    assert main(["ingest", str(bundle)]) == 1
    err = capsys.readouterr().err
    assert f"{bundle / 'logs.jsonl'}, line 2: field 'timestamp': expected an ISO-8601 " \
           f"timestamp (required)" in err
    assert "Traceback" not in err
    assert main(["ingest", str(bundle), "--skip-invalid"]) == 0
    assert "1 invalid row(s) skipped" in capsys.readouterr().out


def test_bad_usage_exits_2(db):
    with pytest.raises(SystemExit) as info:
        main(["ingest"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["ingest", "x", "--format", "no-such-format"])
    assert info.value.code == 2
    assert main([]) == 2


def test_console_script_runs_in_a_fresh_process(db):
    result = subprocess.run([sys.executable, "-m", "llmrca", "incidents", "list"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1  # no store yet: a clear error, not a traceback
    assert "no store at" in result.stderr and "llmrca init" in result.stderr


def test_import_llmrca_is_cheap():
    code = ("import sys, llmrca, llmrca.store, llmrca.ingest, llmrca.models; "
            "heavy = [m for m in ('torch', 'transformers', 'captum', 'papermill') "
            "if m in sys.modules]; print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""


def test_bad_replay_arguments_exit_with_a_reason(db, capsys):
    assert main(["ingest", str(SAMPLES / "INC-0001")]) == 0
    capsys.readouterr()
    cases = [  # bad values are bad usage (2); a name the store does not hold is a failure (1)
        (["--versions", "assistant-v1", "--temperature", "-1"], 2,
         "temperature must be a finite number >= 0; got -1.0"),
        (["--versions", "assistant-v1", "--variant", "drop-prefix"], 2,
         "drop_prefix needs an argument, as drop_prefix:TEXT"),
        (["--versions", "no-such-version"], 1, "unknown model version 'no-such-version'"),
    ]
    for extra, code, message in cases:
        assert main(["replay", "INC-0001", *extra, "--no-progress"]) == code, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_an_unexpected_error_is_one_line_with_a_pointer_to_debug(db, capsys, monkeypatch):
    from llmrca.cli import store_cmds

    def broken(args):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(store_cmds, "cmd_list", broken)
    assert main(["incidents", "list"]) == 1
    err = capsys.readouterr().err
    assert err == ("llmrca: internal error: RuntimeError: something broke (run again with "
                   "--debug for the traceback)\n")
    with pytest.raises(RuntimeError, match="something"):
        main(["--debug", "incidents", "list"])


def test_a_closed_stdout_ends_quietly(db):
    import os

    assert main(["ingest", str(SAMPLES / "INC-0002")]) == 0
    # The reader closes the pipe before the command writes anything (`llmrca ... | head -0`).
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "llmrca.cli", "interactions", "list",
                               "INC-0002"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              check=False)
    finally:
        os.close(write_end)
    assert proc.returncode == 1
    assert proc.stderr == ""


def test_building_the_command_line_imports_no_pandas_or_torch():
    code = ("import sys, llmrca.cli; llmrca.cli.build_parser(); "
            "print(sorted(m for m in ('pandas', 'torch', 'transformers', 'sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
