import io
import time

from tasks.progress import follow_percentages, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_follows_the_engines_percentages_on_a_terminal(tmp_path):
    log, terminal = tmp_path / "engine.log", Terminal()
    log.write_bytes(b"banner\nInitializing data [####      ] 40% Estimated: 0 Minutes\r")
    with follow_percentages(log, "embedding", terminal):
        time.sleep(0.4)
        with open(log, "ab") as handle:
            handle.write(b"Initializing data [#######   ] 73% Estimated: 0 Minutes\r")
        time.sleep(0.6)
    shown = terminal.getvalue()
    assert "embedding" in shown and "40%" in shown and "73%" in shown


def test_nothing_is_drawn_when_nobody_watches(tmp_path):
    log, pipe = tmp_path / "engine.log", io.StringIO()  # StringIO is not a terminal
    log.write_bytes(b"] 50%")
    with follow_percentages(log, "embedding", pipe):
        time.sleep(0.3)
    assert pipe.getvalue() == ""
    assert list(progress(iter([1, 2, 3]), "stage", 3, "item")) == [1, 2, 3]
