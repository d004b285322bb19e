"""Without a terminal, progress is plain timed lines a batch log can be watched by."""
import io

from click.testing import CliRunner

from dpbench.cli import main
from dpbench.run.progress import PlainProgress, RichProgress, make_progress


def test_plain_lines_name_the_stage_its_step_the_fields_and_the_rate():
    stream = io.StringIO()
    with PlainProgress(stream, interval=0.0) as progress:
        task = progress.task("DP fine-tune (private)", total=4)
        for _ in range(4):
            task.advance(1, eps=1.25)
        task.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[dpbench] DP fine-tune (private): started 0/4")
    assert "at 2/4, eps=1.25" in lines[2] and "/s" in lines[2] and " s left" in lines[2]
    assert " s left" not in lines[-1]  # a finished stage has nothing left
    assert lines[-1].startswith("[dpbench] DP fine-tune (private): done 4/4")
    assert "\x1b" not in stream.getvalue()  # no terminal control codes in a log file


def test_a_long_interval_prints_only_start_and_end():
    stream = io.StringIO()
    task = PlainProgress(stream, interval=3600).task("sample (DDIM)", total=100)
    for _ in range(100):
        task.advance()
    task.close()
    assert len(stream.getvalue().splitlines()) == 2


def test_the_cli_without_a_terminal_writes_plain_lines(tmp_path, shared_cache):
    assert isinstance(make_progress(), (PlainProgress, RichProgress))
    result = CliRunner().invoke(main, ["run", "--method", "dp-sgd", "--pair", "digits-mnist", "--eps", "1",
                                       "--preset", "smoke", "--out", str(tmp_path), "--cache-dir", str(shared_cache)])
    assert result.exit_code == 0, result.output
    assert "[dpbench] DP-SGD classifier (private): done" in result.output


def test_an_image_pass_reports_images_done_of_total_while_it_runs():
    """The FID stage's Inception passes advance by images; a plain log shows how far they got before they end."""
    stream = io.StringIO()
    task = PlainProgress(stream, interval=0.0).task("FID/KID: Inception on the samples", total=1000)
    for _ in range(3):
        task.advance(64)
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("[dpbench] FID/KID: Inception on the samples: at 192/1000")
