"""errors.exception_line: the meaningful line of paddle's multi-line messages (no paddle)."""

from trainctl.errors import exception_line


def test_to_static_message_gives_its_last_line():
    exc = TypeError("In transformed code:\n\n    File \"x.py\", line 3, in forward\n        y = F.sigmoid(x)\n\n"
                    "    TypeError: (InvalidType) sigmoid(): argument (position 1) must be Value, but got Variable\n")
    assert exception_line(exc) == "TypeError: (InvalidType) sigmoid(): argument (position 1) must be Value, but got Variable"


def test_cpp_hint_and_location_are_left_out():
    exc = ValueError("(InvalidArgument) Not find predictor_id 0 and pass_name memory_optimize_pass\n"
                     "  [Hint: Expected map.count(predictor_id) == true.] (at /paddle/pass_result_info.h:48)\n")
    assert exception_line(exc) == "ValueError: (InvalidArgument) Not find predictor_id 0 and pass_name memory_optimize_pass"


def test_empty_and_one_line_messages():
    assert exception_line(RuntimeError("\n\n")) == "RuntimeError"
    assert exception_line(KeyError("x")) == "KeyError: 'x'"
