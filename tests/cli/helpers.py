"""Reading a command's result: it succeeded (its output), or it failed saying why."""


def ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def refused(result, message):
    assert result.exit_code != 0, result.output
    assert message in result.output, result.output
    return result.output
