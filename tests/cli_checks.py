"""What every command's bad input must look like: exit status 2 and one line on stderr naming what to fix."""


def one_line_error(main, capsys, args, *words) -> str:
    """Run ``main(args)``; assert it exits with 2 and prints one line holding every word of ``words``."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err
